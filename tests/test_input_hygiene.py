"""User-supplied text reaches the terminal intact and inert; input files say plainly what is wrong.

Rich markup (``[/b]``, ``[bold red]``) and escape sequences (``\\x1b[31m``) in paths and file
names; duplicate YAML keys; empty and truncated images; a missing data folder; the hints at the
end of a search.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automl.cli import main
from automl.config import load_study_file
from automl.data.folder import load_dataset
from automl.errors import ConfigError, DataError
from automl.space.schema import load_search_space
from automl.study.runner import load_data
from tests.conftest import TINY_SPACE, write_yaml

ESC = "\x1b[31m"


def _pair(root: Path, split: str, stem: str, size=(24, 32)) -> None:
    for sub in ("images", "masks"):
        (root / split / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(root / split / "images" / f"{stem}.png")
    Image.fromarray(np.ones(size, np.uint8)).save(root / split / "masks" / f"{stem}.png")


# --- rich markup and escape sequences -------------------------------------------------------

def test_markup_in_a_missing_study_path_is_shown_not_parsed(tmp_path):
    bad = tmp_path / "nosuch[/b].yaml"
    run = subprocess.run([sys.executable, "-m", "automl", "search", str(bad)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "MarkupError" not in run.stdout + run.stderr and "Traceback" not in run.stderr
    assert f"error: {bad}: file not found" in run.stdout


def test_markup_and_escapes_in_data_path_in_process(tiny_study, runs_root, capsys):
    study = tiny_study()
    code = main(["search", str(study), "--runs-root", str(runs_root), "--data", f"/data/x[/red]y{ESC}z"])
    out = capsys.readouterr().out
    assert code == 2
    # the path intact, the escape shown as text, and the flag it came from named
    assert "data folder not found: /data/x[/red]y\\x1b[31mz (from --data)" in out
    assert "\x1b" not in out


def test_markup_and_escapes_in_file_names_are_listed_intact(tmp_path, capsys):
    root = tmp_path / "data"
    _pair(root, "train", "a")
    _pair(root, "val", "v")
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(root / "train" / "images" / "x[bold red]y.png")
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(root / "train" / "images" / f"e{ESC}f.png")
    with pytest.raises(DataError) as exc:
        load_dataset(root, ("bg", "fg"), 255)
    msg = str(exc.value)
    assert "train/images/x[bold red]y.png: no mask" in msg
    assert "train/images/e\\x1b[31mf.png: no mask" in msg and "\x1b" not in msg
    # and through the command line's error printer, which used to drop "[bold red]"
    code = main(["audit", "--data", str(root), "--classes", "bg,fg", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 2
    assert "x[bold red]y.png: no mask" in out and "e\\x1b[31mf.png" in out and "\x1b" not in out


def test_trial_lines_keep_their_bracketed_reason():
    import optuna
    from rich.console import Console

    from automl.view.progress import LiveView

    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    study.tell(trial, 0.5)
    frozen = study.trials[0]
    frozen.set_user_attr("stop_reason", f"failed: [/b] {ESC}")
    console = Console(record=True, width=200)
    view = LiveView(study, 1, console)
    view(study, frozen)
    text = console.export_text()
    assert "[failed: [/b] \\x1b[31m]" in text


# --- YAML -----------------------------------------------------------------------------------

def test_duplicate_keys_in_a_study_file_are_refused(tmp_path):
    write_yaml(tmp_path / "space.yaml", TINY_SPACE)
    path = tmp_path / "dup.yaml"
    path.write_text("name: dup\nsearch_space: space.yaml\nbudget:\n  n_trials: 3\n  trial_epochs: 2\n"
                    "  n_trials: 30\ndata:\n  synthetic: {}\n  classes: [a, b]\n")
    with pytest.raises(ConfigError) as exc:
        load_study_file(path)
    msg = str(exc.value)
    assert str(path) in msg and "'n_trials'" in msg and "lines 4 and 6" in msg


def test_duplicate_keys_in_a_search_space_are_refused(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("model:\n  architectures: [Unet]\n  encoders: [resnet18]\nmodel:\n  encoder_depth: 3\n")
    with pytest.raises(ConfigError, match=r"space\.yaml: key 'model' is given twice .*lines 1 and 4"):
        load_search_space(path)


# --- data check wording ---------------------------------------------------------------------

def test_empty_and_truncated_images_say_so(tmp_path):
    _pair(tmp_path, "train", "a")
    _pair(tmp_path, "train", "empty")
    _pair(tmp_path, "train", "cut")
    _pair(tmp_path, "train", "header")
    _pair(tmp_path, "val", "v")
    (tmp_path / "train" / "images" / "empty.png").write_bytes(b"")
    full = (tmp_path / "train" / "images" / "cut.png").read_bytes()
    (tmp_path / "train" / "images" / "cut.png").write_bytes(full[: len(full) // 2])
    (tmp_path / "train" / "masks" / "header.png").write_bytes(full[:6])  # cut inside the signature
    with pytest.raises(DataError) as exc:
        load_dataset(tmp_path, ("bg", "fg"), 255)
    msg = str(exc.value)
    assert "train/images/empty.png: empty file (0 bytes)" in msg
    assert f"train/images/cut.png: truncated file ({len(full) // 2} bytes)" in msg
    assert "train/masks/header.png: truncated file (6 bytes)" in msg
    assert "OSError" not in msg and "UnidentifiedImageError" not in msg


def test_missing_data_folder_names_the_field(tiny_study, tmp_path):
    study = tiny_study(**{"data.root": "no_such_data", "data.synthetic": None})
    with pytest.raises(DataError, match=r"data folder not found: .*no_such_data \(from data\.root in .*tiny\.yaml\)"):
        load_data(load_study_file(study))
    other = tmp_path / "elsewhere"
    with pytest.raises(DataError, match=r"elsewhere \(from --data\)"):
        load_data(load_study_file(study, overrides={"data.root": str(other)}))


# --- the hints at the end of a search -------------------------------------------------------

def test_end_of_search_hints_run_as_printed(tiny_study, tmp_path, capsys):
    """A Pareto study searched with a non-default runs root and storage: the dashboard hint
    carries both flags, and the Optuna hint uses best-trials (best-trial fails on such a study)."""
    study = tiny_study(**{"budget.n_trials": 1, "budget.trial_epochs": 1, "objectives": ["val_miou", "params_m"]})
    runs_root, url = tmp_path / "my runs", f"sqlite:///{tmp_path / 'elsewhere.db'}"
    code = main(["search", str(study), "--runs-root", str(runs_root), "--storage", url])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"automl dashboard {study} --runs-root '{runs_root}' --storage {url}" in out
    assert "optuna best-trials --storage" in out and "optuna best-trial " not in out
    run = subprocess.run([str(Path(sys.executable).parent / "optuna"), "best-trials", "--storage", url,
                          "--study-name", "tiny", "-f", "json"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
