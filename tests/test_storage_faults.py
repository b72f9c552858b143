"""Writes that fail: a full or read-only database, a full disk under the best trial's weights, and
Ctrl-C or SIGTERM. Each ends in one clear line (the traceback only with -v), and nothing claims
weights that were never written.

Tests run as root, for whom a read-only file is still writable, so the failures are injected: the
database's driver raises SQLite's own "database or disk is full", and the save of the weights
raises ENOSPC.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import automl.study.checkpoints as checkpoints
from automl.cli import main
from automl.config import load_study_file
from automl.diagnostics.model_source import resolve_model
from automl.errors import ConfigError
from automl.study.checkpoints import BestTrialCheckpoint, missing_best_weights, read_recorded
from automl.study.storage import open_storage, resolve_url, write_failure
from automl.trial.engine import FitResult
from automl.trial.model import build_model
from automl.trial_config import ModelSpec

ROOT = Path(__file__).resolve().parent.parent

# Run the CLI with every database write failing once the first trial's value is being stored,
# as when the disk fills during a search.
FULL_DISK = textwrap.dedent("""
    import sqlite3, sys
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    full = [False]

    @event.listens_for(Engine, "do_execute")
    def _write(cursor, statement, parameters, context):
        sql = statement.lstrip().upper()
        full[0] = full[0] or sql.startswith("INSERT INTO TRIAL_VALUES")
        if full[0] and sql.startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")

    from automl.cli import main
    sys.exit(main(sys.argv[1:]))
""")

# Ctrl-C (or SIGTERM, which the CLI turns into the same KeyboardInterrupt) inside a trial.
INTERRUPT = textwrap.dedent("""
    import sys
    import automl.trial.objective as objective

    def fit(*args, **kwargs):
        raise KeyboardInterrupt

    objective.fit = fit
    from automl.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _cli(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    code = [sys.executable, "-c", script] if script else [sys.executable, "-m", "automl"]
    return subprocess.run([*code, *args], capture_output=True, text=True, timeout=300, env=env)


def test_full_database_is_one_clear_line_and_resume_finishes(tiny_study, runs_root):
    study = tiny_study(**{"budget.n_trials": 2, "budget.trial_epochs": 1})
    args = ("search", str(study), "--runs-root", str(runs_root))
    run = _cli(FULL_DISK, *args)
    out = run.stdout + run.stderr
    assert run.returncode == 2, out
    assert "Traceback" not in out and "invalid data in the commit" not in out
    (line,) = [ln for ln in run.stdout.splitlines() if ln.startswith("error:")]
    db = runs_root / "tiny" / "study.db"
    assert "storage sqlite:///" in line and "study.db: cannot write" in line
    assert "database or disk is full" in line and " free in " in line and "run the same command" in line
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    resumed = _cli("", *args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}").get_trials()
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 2
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_storage_failure_names_the_storage_and_keeps_the_cause(tiny_study, runs_root):
    """Optuna's clean-up after a failed write raises AssertionError("Should not reach."): the
    write behind it is still what the user is told about."""
    import sqlalchemy.exc

    sf = load_study_file(tiny_study(), runs_root=runs_root)
    open_storage(resolve_url(sf), sf.storage)
    driver = sqlite3.OperationalError("disk I/O error")
    try:
        try:
            try:
                raise sqlalchemy.exc.OperationalError("UPDATE trials", {}, driver)
            except sqlalchemy.exc.OperationalError as e:
                raise optuna.exceptions.StorageInternalError("invalid data in the commit") from e
        except optuna.exceptions.StorageInternalError:
            raise AssertionError("Should not reach.")  # noqa: B904 - what Optuna does
    except AssertionError as exc:
        err = write_failure(exc)
    assert err is not None
    assert "tiny/study.db: cannot write (OperationalError: disk I/O error)" in str(err)
    assert "invalid data" not in str(err)
    assert write_failure(ValueError("a bug")) is None
    full = write_failure(OSError(errno.ENOSPC, "No space left on device", str(runs_root / "x.png")))
    assert "x.png (No space left on device)" in str(full) and " free in " in str(full)


@pytest.mark.parametrize("verbose", [False, True])
def test_interrupt_prints_one_line_and_the_traceback_only_with_v(tiny_study, runs_root, verbose):
    study = tiny_study(**{"budget.n_trials": 1, "budget.trial_epochs": 1})
    run = _cli(INTERRUPT, *(["-v"] if verbose else []), "search", str(study), "--runs-root", str(runs_root))
    out = run.stdout + run.stderr
    assert run.returncode == 130, out
    assert "interrupted: the running trial is marked failed" in run.stdout
    assert ("Traceback" in out) == verbose


# --- the best trial's weights on a full disk ------------------------------------------------

def _model():
    torch.manual_seed(0)
    return build_model(ModelSpec(arch="Unet", encoder="resnet18", encoder_depth=3), 5)


def _no_space(calls: list, fail: set[int]):
    real = checkpoints.save_model

    def save(model, cfg, out_dir, extra=None):
        calls.append(extra["trial_number"])
        if len(calls) in fail:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(model, cfg, out_dir, extra=extra)

    return save


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # trials told by hand, not by optimize
def test_best_weights_that_could_not_be_saved_are_never_claimed(tiny_study, runs_root, monkeypatch, caplog):
    from automl.space.sample import ResolvedSpace
    from automl.space.schema import load_search_space
    from automl.trial_config import DataSpec

    path = tiny_study()
    sf = load_study_file(path, runs_root=runs_root)
    storage = open_storage(resolve_url(sf), sf.storage)
    study = optuna.create_study(study_name=sf.name, storage=storage, direction="maximize")
    space = ResolvedSpace(load_search_space(sf.search_space), ["Unet/resnet18"])
    spec = DataSpec(classes=tuple(sf.data.classes), ignore_index=255)
    calls: list[int] = []
    monkeypatch.setattr(checkpoints, "save_model", _no_space(calls, fail={2, 3}))
    hook = BestTrialCheckpoint(sf.run_dir)

    def finish(value: float) -> int:
        trial = study.ask()
        cfg = space.sample(trial, data=spec, epochs=1, seed=0)
        hook(trial, cfg, FitResult(model=_model()), value)
        study.tell(trial, value)
        hook.promote(storage)  # as the search does once the trial is told
        return trial.number

    finish(0.5)                      # saved
    best = finish(0.8)               # the disk is full: not saved
    assert "its weights could not be saved" in caplog.text and "No space left on device" in caplog.text
    assert " free in " in caplog.text
    assert read_recorded(hook.dir)["trial_number"] == 0
    rerun = f"automl rerun {path}"
    missing = missing_best_weights(sf, storage, rerun)
    assert missing is not None and missing.trial_number == best
    assert f"best trial #{best} were not saved (No space left on device; " in missing.message
    assert " free in " in missing.message and f"run `{rerun} --trial {best}`" in missing.message
    with pytest.raises(ConfigError, match=f"best trial #{best} were not saved"):
        resolve_model(path, runs_root=runs_root)  # what `automl inspect` uses: not the older weights
    finish(0.6)                      # still full: trial 1's weights are tried again, and fail
    assert read_recorded(hook.dir)["trial_number"] == 0
    finish(0.7)                      # space again: trial 1's weights land, not this worse trial's
    assert read_recorded(hook.dir)["trial_number"] == best and calls == [0, 1, 1, 1]
    assert missing_best_weights(sf, storage, rerun) is None
    assert resolve_model(path, runs_root=runs_root).model_dir == hook.dir


def test_search_inspect_and_rerun_when_the_weights_could_not_be_saved(tiny_study, runs_root, monkeypatch, capsys):
    study = str(tiny_study(**{"budget.n_trials": 1, "budget.trial_epochs": 1}))
    monkeypatch.setattr(checkpoints, "save_model", _no_space([], fail=set(range(1, 100))))
    assert main(["search", study, "--runs-root", str(runs_root)]) == 0
    out = capsys.readouterr().out
    hint = f"automl rerun {study} --runs-root {runs_root} --trial 0"
    assert "warning: the weights of best trial #0 were not saved (No space left on device; " in out
    assert f"run `{hint}`" in out and "Traceback" not in out
    assert main(["inspect", study, "--runs-root", str(runs_root), "--no-attach"]) == 2
    assert "error: the weights of best trial #0 were not saved" in capsys.readouterr().out
    monkeypatch.undo()  # space again: the rerun the message names fills the folder
    assert main(hint.split()[1:]) == 0
    assert "best_trial now holds these weights" in capsys.readouterr().out
    sf = load_study_file(study, runs_root=runs_root)
    assert read_recorded(sf.run_dir / "best_trial")["trial_number"] == 0
    assert missing_best_weights(sf, open_storage(resolve_url(sf), sf.storage), "automl rerun") is None


@pytest.mark.parametrize("verbose", [False, True])
def test_the_cause_of_an_error_is_shown_with_v(verbose):
    from rich.console import Console

    from automl.cli import print_error
    from automl.errors import StorageError

    err = StorageError("storage sqlite:///x.db: cannot write (OperationalError: disk I/O error)")
    try:
        raise sqlite3.OperationalError("disk I/O error")
    except sqlite3.OperationalError as exc:
        err.__cause__ = exc
    console = Console(record=True, width=300)
    print_error(console, err, verbose)
    text = console.export_text()
    assert text.rstrip().endswith(f"error: {err}")
    assert ("Traceback" in text and "sqlite3.OperationalError: disk I/O error" in text) == verbose
