"""The untouched split (automl.data.split): a seeded carve of train/ selects, the folder's val/
(or test/) is held out, a study keeps one split, and the holdout is read only when the shipped
model is scored on it, after every decision of the final stage."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

import automl
from automl.config import DataSection, load_study_file
from automl.data.folder import Dataset, Split
from automl.data.split import assign_roles, carve_order
from automl.data.synthetic import generate
from automl.errors import ConfigError, DataError
from automl.final import pipeline
from automl.final.retrain import trainval_split
from automl.study import runner
from tests.conftest import write_yaml
from tests.test_final import one_torch_thread, tiny_config  # noqa: F401 - fixture: one torch thread

CLASSES = ["a", "b"]


def _dataset(n_train: int, n_val: int = 3, n_test: int = 0, order=None) -> Dataset:
    """In-memory folders of 4x4 images; the stems name the split and the image."""
    ds = Dataset(classes=tuple(CLASSES), ignore_index=255)
    for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if n:
            stems = [f"{name}{i:03d}" for i in (order or range(n))]
            ds.splits[name] = Split(name, stems, [np.full((4, 4, 3), i, np.uint8) for i in range(n)],
                                    [np.zeros((4, 4), np.uint8) for _ in range(n)])
    return ds


def _section(**kw) -> DataSection:
    return DataSection(root=Path("."), classes=CLASSES, **kw)


def test_carve_is_deterministic_disjoint_and_covers_train():
    a = assign_roles(_dataset(30), _section(val_fraction=0.2))
    b = assign_roles(_dataset(30, order=list(reversed(range(30)))), _section(val_fraction=0.2))  # listing order
    assert len(a.val) == 6 and len(a.train) == 24
    assert set(a.val.stems) == set(b.val.stems) and a.record == b.record
    assert not set(a.train.stems) & set(a.val.stems)
    assert set(a.train.stems) | set(a.val.stems) == {f"train{i:03d}" for i in range(30)}
    # the images travel with their stems
    assert all(int(img[0, 0, 0]) == int(s[-3:]) for s, img in zip(a.val.stems, a.val.images, strict=True))
    # the folder's val/ is now the untouched holdout, whole
    assert a.holdout.stems == ["val000", "val001", "val002"] and a.sources["holdout"] == "val/"
    other = assign_roles(_dataset(30), _section(val_fraction=0.2, split_seed=1))
    assert set(other.val.stems) != set(a.val.stems) and other.record != a.record


def test_the_carve_is_the_same_in_another_process():
    stems = [f"img_{i}" for i in range(50)]
    code = ("import json, sys; from automl.data.split import carve_order; "
            "print(json.dumps(carve_order(json.loads(sys.argv[1]), 3)))")
    env = {"PYTHONHASHSEED": "12345", "PYTHONPATH": str(Path(automl.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(stems)], capture_output=True, text=True,
                         check=True, env=env)
    assert json.loads(out.stdout) == carve_order(stems, 3)


def test_a_small_train_split_gets_the_floor_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="automl.data.split"):
        ds = assign_roles(_dataset(5), _section(val_fraction=0.1))
    assert len(ds.val) == 2 and len(ds.train) == 3
    assert "the floor (data.min_val_images)" in caplog.text
    with pytest.raises(DataError, match=r"data.val_fraction 0.5: train/ has 2 image\(s\); a selection split of 2 "
                                        r"\(at least data.min_val_images = 2\) leaves none to train on"):
        assign_roles(_dataset(2), _section(val_fraction=0.5))


def test_roles_without_a_carve_and_with_a_test_folder():
    plain = assign_roles(_dataset(10, n_test=2), _section())
    assert plain.val.stems[0] == "val000" and plain.holdout.stems == ["test000", "test001"]
    assert plain.record["val_fraction"] is None and plain.record["selection"] == "val/"
    assert assign_roles(_dataset(10), _section()).holdout is None
    carved = assign_roles(_dataset(10, n_test=2), _section(val_fraction=0.3))
    # test/ is held out; val/ is neither trained nor selected on
    assert carved.holdout.stems == ["test000", "test001"] and set(carved.splits) == {"train", "val", "holdout"}
    assert all(s.startswith("train") for s in carved.val.stems + carved.train.stems)
    merged = trainval_split(carved)
    assert len(merged) == 10 and not any("test" in s for s in merged.stems)


def _folder_study(tmp_path: Path, *, val: bool = True, **data) -> Path:
    """A study on a folder (train 16, val 6 unless ``val`` is False) and the tiny search space."""
    from tests.conftest import TINY_SPACE, tiny_study_doc

    root = generate(tmp_path / "data", n_train=16, n_val=6, height=40, width=56, seed=1)
    if not val:
        shutil.rmtree(root / "val")
    doc = tiny_study_doc("split")
    doc["data"] = {"root": str(root), "classes": doc["data"]["classes"], **data}
    write_yaml(tmp_path / "space.yaml", TINY_SPACE)
    return write_yaml(tmp_path / "split.yaml", doc)


def test_a_train_only_folder_needs_val_fraction(tmp_path, runs_root):
    path = _folder_study(tmp_path, val=False)
    with pytest.raises(DataError, match=r"val/: missing split folder; add one, or set data.val_fraction"):
        runner.load_data(load_study_file(path, runs_root=runs_root))
    ds = runner.load_data(load_study_file(path, overrides={"data.val_fraction": 0.25}, runs_root=runs_root))
    assert (len(ds.train), len(ds.val), ds.holdout) == (12, 4, None)


def test_a_study_keeps_its_split(tmp_path, runs_root):
    path = _folder_study(tmp_path, val_fraction=0.25)
    prep = runner.prepare(load_study_file(path, runs_root=runs_root))
    study = runner.setup_study(prep)
    record = study.user_attrs["data_split"]
    assert (record["val_fraction"], record["split_seed"], record["selection_images"]) == (0.25, 0, 4)
    # the same split resumes
    runner.setup_study(runner.prepare(load_study_file(path, runs_root=runs_root)))
    for change, named in (({"data.val_fraction": 0.5}, "val_fraction 0.25 → 0.5"),
                          ({"data.split_seed": 3}, "split_seed 0 → 3")):
        changed = runner.prepare(load_study_file(path, overrides=change, runs_root=runs_root))
        with pytest.raises(ConfigError, match=f"study split was run on another data split \\({named}"):
            runner.setup_study(changed)
    assert not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,
                                                        optuna.trial.TrialState.COMPLETE))
    # the final stage refuses too: the holdout would be one the search selected on
    study.add_trial(optuna.trial.create_trial(value=0.3, user_attrs={"config": tiny_config(prep.sf).to_dict(),
                                                                           "params_m": 1.0}))
    sf = load_study_file(path, overrides={"data.val_fraction": None}, runs_root=runs_root)
    with pytest.raises(ConfigError, match=r"val_fraction 0.25 → None"):
        pipeline.run_final(sf, epochs=1)


class Guarded(list):
    """A list that counts reads while open and records (and raises on) reads while closed."""

    def __init__(self, items, gate: Gate, what: str):
        super().__init__(items)
        self.gate, self.what = gate, what

    def _read(self, index=None):
        if not self.gate.open:
            self.gate.closed_reads.append(self.what)
            raise AssertionError(f"holdout {self.what} read before the final score")
        self.gate.reads[self.what].append(index)

    def __getitem__(self, i):
        self._read(i)
        return super().__getitem__(i)

    def __iter__(self):
        self._read("iter")
        return super().__iter__()

    # whole-list reads that bypass __getitem__ in C (`list + guarded` calls __radd__ first)
    def __add__(self, other):
        self._read("add")
        return list.__add__(self, other)

    def __radd__(self, other):
        self._read("add")
        return list(other) + list.copy(self)

    def copy(self):
        self._read("copy")
        return list.copy(self)

    def __contains__(self, item):
        self._read("contains")
        return list.__contains__(self, item)

    def __reversed__(self):
        self._read("reversed")
        return list.__reversed__(self)


class Gate:
    def __init__(self):
        self.open = False
        self.closed_reads: list[str] = []
        self.reads: dict[str, list] = {"images": [], "masks": []}


def test_the_holdout_is_read_only_by_the_final_score(tmp_path, runs_root, monkeypatch):
    gate, events = Gate(), []
    real_load = runner.load_data

    def guarded_load(sf):
        ds = real_load(sf)
        h = ds.holdout
        h.images, h.masks = Guarded(h.images, gate, "images"), Guarded(h.masks, gate, "masks")
        return ds

    def score_holdout(*args, **kw):
        events.append("holdout")
        gate.open = True
        try:
            return real_score(*args, **kw)
        finally:
            gate.open = False

    def recorded(name, fn):
        def call(*args, **kw):
            events.append(name)
            return fn(*args, **kw)
        return call

    real_score = pipeline._score_holdout
    monkeypatch.setattr(runner, "load_data", guarded_load)
    monkeypatch.setattr(pipeline, "load_data", guarded_load)
    monkeypatch.setattr(pipeline, "_score_holdout", score_holdout)
    for name in ("decide_tta", "quantize_with_fallbacks", "_manifest"):
        monkeypatch.setattr(pipeline, name, recorded(name, getattr(pipeline, name)))

    path = _folder_study(tmp_path, val_fraction=0.25)
    sf = load_study_file(path, runs_root=runs_root, overrides={
        "budget.n_trials": 2, "budget.trial_epochs": 1, "final.train_on_trainval": True, "final.latency_runs": 5,
        "final.latency_threads": 1, "final.int8.max_drop": 1.0})
    prep = runner.prepare(sf)
    study = runner.run_all(prep)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"] and not gate.closed_reads
    res = pipeline.run_final(sf, epochs=1)  # loads the data again, as `automl final` does

    assert not gate.closed_reads, gate.closed_reads
    assert events.index("holdout") == len(events) - 1 and {"decide_tta", "quantize_with_fallbacks",
                                                           "_manifest"} <= set(events)
    report = res.report
    shipped = list(report["latency"]["results"])  # every variant the bundle ships
    default = report["default_predictor"]
    default_key = [k for k in shipped if k.endswith("_tta") == default["tta"]
                   and k.startswith("torch" if default["backend"] == "torch" else "ort")
                   and default["precision"] in k][0]
    # the default, the same without TTA, and the torch model
    scored = [k for k in shipped if k in {default_key, default_key.removesuffix("_tta"), "torch_fp32"}]
    assert len(shipped) == 6 and list(report["holdout"]["scores"]) == scored and len(scored) in (2, 3)
    # each scored variant read each of the 6 holdout images and masks exactly once
    for what in ("images", "masks"):
        assert sorted(gate.reads[what]) == sorted(list(range(6)) * len(scored)), what
    assert report["holdout"]["source"] == "val/" and report["holdout"]["images"] == 6
    assert report["data_split"]["selection_images"] == 4 and report["retrain"]["train_on_trainval"]
    md = (res.bundle_dir / "report.md").read_text()
    assert "## Untouched holdout" in md and "**Untouched holdout: scored once, after every decision.**" in md
    assert "| variant | val mIoU | holdout mIoU |" in md
    final = optuna.load_study(study_name=sf.name, storage=prep.storage_url).user_attrs["final"]
    assert final["holdout"] == "val/" and f"holdout_miou_{shipped[0]}" in final

    from automl.view.status import study_status

    lines = dict(study_status(optuna.load_study(study_name=sf.name, storage=prep.storage_url), sf, 2, None).data)
    assert lines["data split"] == "12 train, 4 selection: carved from train/ (0.25, seed 0)"
    assert lines["untouched holdout"].startswith("val/ (6 images): mIoU ")
