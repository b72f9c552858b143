"""`automl inspect`: planted mask errors rank at the top; the outlier rule; model/bundle/study paths."""

from __future__ import annotations

import csv
import math
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from PIL import Image

from automl.cli import main
from automl.data.folder import Dataset, Split
from automl.diagnostics.corrupt import empty_mask, erase_objects, shift_mask, swap_classes
from automl.diagnostics.model_source import resolve_model
from automl.diagnostics.per_sample import SampleScore, rank
from automl.errors import ConfigError
from automl.trial.checkpoint import save_model
from automl.trial.engine import Runtime, fit
from automl.trial_config import (
    AugmentSpec,
    DataSpec,
    LossSpec,
    ModelSpec,
    OptimizerSpec,
    ScheduleSpec,
    TrialConfig,
)
from tests.conftest import write_dataset

CLASSES = ("bg", "red", "green", "blue")
COLOURS = np.array([[20, 20, 20], [220, 40, 40], [40, 200, 40], [50, 80, 230]], np.uint8)
SIZE = 32
# val image index → planted error
PLANTED = {2: "swap", 5: "shift", 9: "erase", 12: "empty"}


def _sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Colour-coded rectangles on a dark background: a task a tiny model learns in seconds."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(rng.integers(1, 3)):
        c = rng.integers(1, 4)
        hh, ww = rng.integers(8, 18, 2)
        y, x = rng.integers(0, SIZE - hh), rng.integers(0, SIZE - ww)
        mask[y:y + hh, x:x + ww] = c
    img = COLOURS[mask].astype(np.float32) + rng.normal(0, 12, (SIZE, SIZE, 3))
    return np.clip(img, 0, 255).astype(np.uint8), mask


def _split(name: str, n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    pairs = [_sample(rng) for _ in range(n)]
    return Split(name, [f"{name}{i:02d}" for i in range(n)], [p[0] for p in pairs], [p[1] for p in pairs])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """On a shared 2-core machine two intra-op threads are many times slower than one."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """A tiny model trained on clean data; a data folder whose val masks carry planted errors."""
    tmp = tmp_path_factory.mktemp("inspect")
    clean = Dataset(CLASSES, 255, {"train": _split("train", 24, 0), "val": _split("val", 16, 1)})
    cfg = TrialConfig(seed=0, epochs=8, batch_size=4, data=DataSpec(classes=CLASSES),
                      model=ModelSpec(arch="Linknet", encoder="resnet18", encoder_depth=3),
                      optimizer=OptimizerSpec(name="adamw", lr=5e-3), schedule=ScheduleSpec(name="constant"),
                      loss=LossSpec(ce=1.0, dice=1.0), augment=AugmentSpec(crop_height=SIZE, crop_width=SIZE))
    result = fit(cfg, clean, Runtime.resolve("cpu"))
    assert result.history[-1].miou > 0.8, "the tiny model must learn the task for the ranking to mean anything"
    model_dir = save_model(result.model, cfg, tmp / "model")
    clean_root = write_dataset(clean, tmp / "clean")
    corrupt = {"swap": lambda m: swap_classes(m, 255), "shift": lambda m: shift_mask(m, 255),
               "erase": lambda m: erase_objects(m, 255), "empty": lambda m: empty_mask(m, 255)}
    val = clean.val
    for i, kind in PLANTED.items():
        val.masks[i] = corrupt[kind](val.masks[i])
    return model_dir, write_dataset(clean, tmp / "data"), clean_root


def _ranking(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_planted_errors_rank_at_the_top(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    model_dir, data, _ = trained
    out = tmp_path / "out"
    assert main(["inspect", str(model_dir), "--data", str(data), "--out", str(out), "--worst", "5",
                 "--device", "cpu"]) == 0
    rows = _ranking(out / "ranking.csv")
    assert len(rows) == 16 and [int(r["rank"]) for r in rows] == list(range(1, 17))
    top = {r["image"] for r in rows[: len(PLANTED)]}
    assert top == {f"val/val{i:02d}" for i in PLANTED}
    assert all(r["flagged"] == "1" for r in rows[: len(PLANTED)])
    assert all(r["flagged"] == "0" for r in rows[len(PLANTED):])      # no clean image flagged
    assert rows[0]["image"] == "val/val12" and rows[0]["score"] == "inf"   # all void: cannot be scored
    assert rows[0]["reason"].startswith("no labelled pixel")
    overlays = sorted(out.glob("worst_*.png"))
    assert len(overlays) == 5 and overlays[0].name == "worst_01_val12.png"
    with Image.open(overlays[1]) as im:   # four panels side by side, upscaled to at least 160 px high
        assert im.width >= 4 * 160 and im.height >= 160
    report = (out / "inspect.md").read_text()
    assert "modified z-score" in report and "worst_02_" in report


def test_inspect_a_study_attaches_results(trained, tiny_study, runs_root, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    model_dir, data, _ = trained
    study_path = tiny_study(**{"data.root": str(data), "data.classes": list(CLASSES)})
    with pytest.raises(ConfigError, match="no best-trial weights yet"):
        resolve_model(study_path, runs_root=runs_root)
    shutil.copytree(model_dir, runs_root / "tiny" / "best_trial")
    assert main(["inspect", str(study_path), "--runs-root", str(runs_root), "--worst", "2", "--device", "cpu"]) == 0
    assert (runs_root / "tiny" / "inspect" / "val" / "ranking.csv").is_file()
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{runs_root / 'tiny' / 'study.db'}")
    flagged = study.user_attrs["inspect_val_flagged"]
    assert {f.split(":")[0] for f in flagged} >= {f"val/val{i:02d}" for i in PLANTED}
    names = {m.filename for m in optuna.artifacts.get_all_artifact_meta(study)}
    assert {"inspect.md", "ranking.csv", "legend.png", "worst_01_val12.png"} <= names
    assert len([n for n in names if n.startswith("worst_")]) == 2
    assert set(study.user_attrs["inspect_val_artifacts"]) == names


def test_model_paths_resolve(trained, tmp_path):
    model_dir, _, _ = trained
    bundle = tmp_path / "bundle"
    shutil.copytree(model_dir, bundle / "model")
    assert resolve_model(bundle).model_dir == bundle / "model"
    assert resolve_model(model_dir).model_dir == model_dir
    with pytest.raises(ConfigError, match="not a study file"):
        resolve_model(tmp_path)


def test_planted_errors_benchmark_smoke(trained, monkeypatch, capsys):
    model_dir, _, clean = trained
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys, "argv", ["planted_errors.py", str(model_dir), "--data", str(clean), "--per-kind", "1",
                                      "--kinds", "swap,shift,erase", "--device", "cpu"])
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "planted_errors.py"
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(bench), run_name="__main__")
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "where the planted errors rank (of 16)" in text
    assert "planted 3: ranks [1, 2, 3]; all within the top 3; 3 of 3 flagged" in text


def _scores(mious, losses):
    return [SampleScore(i, f"s{i}", m, l, 1.0, 1.0) for i, (m, l) in enumerate(zip(mious, losses))]


def test_outlier_rule():
    rng = np.random.default_rng(0)
    mious = list(0.8 + rng.normal(0, 0.02, 30))
    losses = list(0.2 + rng.normal(0, 0.02, 30))
    mious[7], losses[11] = 0.3, 2.0               # one low mIoU, one high loss
    ranked = rank(_scores(mious + [math.nan], losses + [math.nan]))
    assert ranked[0].index == 30 and {s.index for s in ranked[1:3]} == {7, 11}
    assert {s.index for s in ranked if s.flagged} == {30, 11, 7}
    assert "mIoU 0.300" in next(s.reason for s in ranked if s.index == 7)
    assert "loss 2.000" in next(s.reason for s in ranked if s.index == 11)
    # identical scores (MAD 0) except one: the mean-absolute-deviation fallback still flags it
    flat = rank(_scores([0.9] * 10 + [0.1], [0.1] * 11))
    assert flat[0].index == 10 and [s.index for s in flat if s.flagged] == [10]
