"""Overnight robustness with real processes: SIGKILL, SIGTERM, restarts, several workers on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
from optuna.trial import TrialState

from automl.config import load_study_file
from automl.study.storage import open_storage
from automl.trial.objective import INTERRUPTED

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _cli(*args: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "automl", *args], stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, env=env)


def _wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = pred()
        if out:
            return out
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _study(path: Path, runs_root: Path) -> optuna.Study:
    sf = load_study_file(path, runs_root=runs_root)
    url = sf.storage.url or f"sqlite:///{sf.run_dir / 'study.db'}"
    return optuna.load_study(study_name=sf.name, storage=open_storage(url, sf.storage))


def _running_trial_of(study_fn, pid: int):
    """A trial that process ``pid`` is training (its config is already recorded)."""
    def pred():
        try:
            study = study_fn()
        except KeyError:
            return None
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("worker", "").endswith(f":{pid}") and "config" in t.user_attrs:
                return t.number
        return None
    return pred


def _assert_consistent(study: optuna.Study, target: int) -> list:
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len([t for t in trials if t.state in FINISHED]) == target
    return trials


def test_three_workers_on_postgres_one_killed(pg_url, tiny_study, runs_root, tmp_path):
    name = f"w3_{uuid.uuid4().hex[:8]}"
    path = tiny_study(name=name, **{"budget.n_trials": 6, "budget.trial_epochs": 3, "storage.url": pg_url,
                                    "storage.heartbeat_interval": 1, "storage.grace_period": 4})
    try:
        procs = [_cli("worker", str(path), "--runs-root", str(runs_root), "--worker-index", str(i),
                      "--threads", "1", log=tmp_path / f"w{i}.log") for i in range(3)]
        victim = procs[1]
        killed = _wait_for(_running_trial_of(lambda: _study(path, runs_root), victim.pid), 180, "a running trial")
        victim.send_signal(signal.SIGKILL)
        for p in (procs[0], procs[2]):
            assert p.wait(timeout=300) == 0, (tmp_path / "w0.log").read_text()[-2000:]
        trials = _assert_consistent(_study(path, runs_root), 6)
        assert trials[killed].state == TrialState.FAIL
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
        # the retry runs unless the other workers reached the total first; then it waits, unneeded
        assert len(retries) == 1 and retries[0].state in (*FINISHED, TrialState.WAITING)
        retry = retries[0]
        assert retry.params == trials[killed].params
        if retry.state != TrialState.WAITING:  # a retry that never started has no retry_of yet
            assert retry.user_attrs["retry_of"] == killed
    finally:
        for p in procs:
            p.kill()
        optuna.delete_study(study_name=name, storage=pg_url)


def test_killed_search_restarts_to_the_study_total(tiny_study, runs_root, tmp_path):
    path = tiny_study(**{"budget.n_trials": 4, "budget.trial_epochs": 3})
    args = ("search", str(path), "--runs-root", str(runs_root))
    first = _cli(*args, log=tmp_path / "first.log")
    _wait_for(_running_trial_of(lambda: _study(path, runs_root), first.pid), 180, "a running trial")
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = _cli(*args, log=tmp_path / "second.log")
    assert second.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()[-3000:]
    trials = _assert_consistent(_study(path, runs_root), 4)
    assert any(t.system_attrs.get("failed_trial") is not None for t in trials)


def test_sigterm_leaves_no_running_trial_and_resume_retries_it(tiny_study, runs_root, tmp_path):
    # Trials of 6 unpruned epochs, so the signal lands inside the trial it was sent during: a
    # SIGTERM dropped by a finalizer is sent again 50 ms later, and a 3-epoch trial pruned after
    # its first epoch could end in between (the search then stops between trials, none interrupted).
    path = tiny_study(**{"budget.n_trials": 2, "budget.trial_epochs": 6, "pruner.type": "none"})
    args = ("search", str(path), "--runs-root", str(runs_root))
    proc = _cli(*args, log=tmp_path / "term.log")
    number = _wait_for(_running_trial_of(lambda: _study(path, runs_root), proc.pid), 180, "a running trial")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    assert time.monotonic() - t0 < 15
    study = _study(path, runs_root)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    # the signal hits trial `number`, or the next one if `number` ended just before it arrived
    (interrupted,) = [t for t in study.get_trials() if t.user_attrs.get("stop_reason") == INTERRUPTED]
    assert interrupted.state == TrialState.FAIL and interrupted.number >= number
    number = interrupted.number
    resumed = _cli(*args, log=tmp_path / "resume.log")
    assert resumed.wait(timeout=300) == 0
    study = _study(path, runs_root)
    trials = _assert_consistent(study, 2)
    assert [t.number for t in trials if t.system_attrs.get("failed_trial") == number]
    # the interrupted trial ended outside optimize's callbacks; the resume wrote its dashboard note
    from optuna_dashboard import get_note

    assert "interrupted" in get_note(optuna.Trial(study, interrupted._trial_id))


def test_an_interrupt_dropped_by_a_finalizer_is_raised_again(monkeypatch):
    """Python drops an exception raised inside ``__del__`` or a weakref callback. A SIGTERM that
    lands there must still stop the process: CI once saw a search finish after its SIGTERM, the
    KeyboardInterrupt "ignored" inside a SQLAlchemy garbage-collection callback."""
    import pytest

    from automl.cli import install_interrupts

    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # put back after the test
    before = signal.getsignal(signal.SIGTERM)

    class Finalizer:
        def __del__(self):
            raise KeyboardInterrupt  # what the SIGTERM handler does when the signal lands here

    try:
        install_interrupts()
        with pytest.raises(KeyboardInterrupt):
            Finalizer()  # collected at once: its exception is dropped, then raised again here
            for _ in range(200):
                time.sleep(0.005)
    finally:
        signal.signal(signal.SIGTERM, before)


def test_stale_trial_of_a_remote_worker_is_retried_by_heartbeat(pg_url, tiny_study, runs_root, tmp_path):
    """A worker on another machine dies: nobody can check its pid, only its heartbeat stops."""
    name = f"hb_{uuid.uuid4().hex[:8]}"
    # long enough trials (a few seconds) that the poll below sees one running before it completes
    path = tiny_study(name=name, **{"budget.n_trials": 2, "budget.trial_epochs": 30, "pruner": {"type": "none"},
                                    "storage.url": pg_url, "storage.heartbeat_interval": 1,
                                    "storage.grace_period": 3})
    try:
        proc = _cli("worker", str(path), "--runs-root", str(runs_root), log=tmp_path / "remote.log")
        number = _wait_for(_running_trial_of(lambda: _study(path, runs_root), proc.pid), 180, "a running trial")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        study = _study(path, runs_root)
        trial = study.get_trials()[number]
        study._storage.set_trial_user_attr(trial._trial_id, "worker", "another-machine:1")
        survivor = _cli("worker", str(path), "--runs-root", str(runs_root), log=tmp_path / "survivor.log")
        assert survivor.wait(timeout=300) == 0, (tmp_path / "survivor.log").read_text()[-3000:]
        trials = _assert_consistent(_study(path, runs_root), 2)
        assert trials[number].state == TrialState.FAIL
        assert [t for t in trials if t.system_attrs.get("failed_trial") == number]
    finally:
        optuna.delete_study(study_name=name, storage=pg_url)


def test_password_never_reaches_the_logs(pg_url, tiny_study, runs_root):
    secret = "s3cret-Pw"
    url = pg_url.replace("postgres@", f"postgres:{secret}@")  # trust auth ignores the password
    name = f"pw_{uuid.uuid4().hex[:8]}"
    path = tiny_study(name=name, **{"budget.n_trials": 1, "budget.trial_epochs": 1})
    try:
        out = subprocess.run([sys.executable, "-m", "automl", "search", str(path), "--runs-root", str(runs_root),
                              "--storage", url], capture_output=True, text=True, timeout=300)
        status = subprocess.run([sys.executable, "-m", "automl", "status", str(path), "--runs-root",
                                 str(runs_root), "--storage", url], capture_output=True, text=True, timeout=120)
        bad = subprocess.run([sys.executable, "-m", "automl", "status", str(path), "--runs-root", str(runs_root),
                              "--storage", f"postgresql+psycopg://u:{secret}@127.0.0.1:1/none"],
                             capture_output=True, text=True, timeout=120)
    finally:
        optuna.delete_study(study_name=name, storage=pg_url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert status.returncode == 0 and "1 complete" in status.stdout
    assert bad.returncode == 2 and "cannot open" in bad.stdout
    for run in (out, status, bad):
        assert secret not in run.stdout + run.stderr
    assert "postgres:***@" in out.stdout


def test_storage_urls_in_logs_show_no_home_folder(tmp_path, monkeypatch):
    from automl.study.storage import mask_url

    monkeypatch.chdir(tmp_path)
    assert mask_url(f"sqlite:///{tmp_path}/runs/demo/study.db") == "sqlite:///runs/demo/study.db"
    assert mask_url("sqlite:////home/alice/data/night/runs/x/study.db") == "sqlite:///…/runs/x/study.db"
    assert mask_url("journal:///home/alice/shared/study.log") == "journal://…/alice/shared/study.log"
    assert mask_url("sqlite:///runs/demo/study.db") == "sqlite:///runs/demo/study.db"  # relative: as given
    assert mask_url("mysql+pymysql://root:pw@127.0.0.1/test") == "mysql+pymysql://root:***@127.0.0.1/test"
    assert mask_url("postgresql+psycopg://bob:ab/c:d@db:5432/x") == "postgresql+psycopg://bob:***@db:5432/x"
    assert mask_url("postgresql+psycopg://db:5432/x") == "postgresql+psycopg://db:5432/x"


def test_two_workers_on_mariadb(mysql_url, tiny_study, runs_root, tmp_path):
    name = f"my_{uuid.uuid4().hex[:8]}"
    path = tiny_study(name=name, **{"budget.n_trials": 3, "budget.trial_epochs": 1, "storage.url": mysql_url})
    try:
        procs = [_cli("worker", str(path), "--runs-root", str(runs_root), "--worker-index", str(i),
                      "--threads", "1", log=tmp_path / f"m{i}.log") for i in range(2)]
        for i, p in enumerate(procs):
            assert p.wait(timeout=300) == 0, (tmp_path / f"m{i}.log").read_text()[-2000:]
        _assert_consistent(_study(path, runs_root), 3)
    finally:
        optuna.delete_study(study_name=name, storage=mysql_url)


def test_search_with_two_local_workers_on_sqlite(tiny_study, runs_root):
    path = tiny_study(**{"budget.n_trials": 3, "budget.trial_epochs": 1})
    out = subprocess.run([sys.executable, "-m", "automl", "search", str(path), "--runs-root", str(runs_root),
                          "--workers", "2"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    trials = _assert_consistent(_study(path, runs_root), 3)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2, workers  # both processes ran trials
    assert trials[0].user_attrs.get("baseline") is True
    assert "best trial #" in out.stdout
