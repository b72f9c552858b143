"""benchmarks.budget's set-up, without training: the EM-like dataset it generates and the study
file its (b) arm runs (studies/camvid.yaml with the benchmark's data and seed)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from automl.config import load_study_file
from automl.study.runner import load_data
from benchmarks import budget, em_like


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_em_like_is_deterministic_and_loads_with_a_holdout(tmp_path: Path):
    a = em_like.generate(tmp_path / "a", n_train=5, n_test=2, size=96)
    b = em_like.generate(tmp_path / "b", n_train=5, n_test=2, size=96)
    assert _tree(a) and _tree(a) == _tree(b)
    other = em_like.generate(tmp_path / "c", n_train=5, n_test=2, size=96, seed=1)
    assert _tree(other) != _tree(a)

    args = argparse.Namespace(dataset="em-like", data=a, val_fraction=0.2, minutes=10, arm_seed=3,
                              **{k: None for k in budget.FROM_STUDY if k != "val_fraction"})
    doc = budget.study_doc(args, threads=1)
    (tmp_path / "space.yaml").write_text("{}")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc))
    sf = load_study_file(path, runs_root=tmp_path / "runs")
    assert sf.sampler.seed == 3 and sf.final.latency_threads == 1 and sf.budget.timeout == 600
    # the study file's other settings come along (the selection split's seed, the trial length)
    camvid = yaml.safe_load(budget.STUDY_FILE.read_text())
    assert sf.data.split_seed == camvid["data"]["split_seed"]
    assert sf.budget.trial_epochs == camvid["budget"]["trial_epochs"]

    data = load_data(sf)
    assert data.sources["holdout"] == "test/" and len(data.holdout) == 2
    assert len(data.train) + len(data.val) == 5
    labels = np.unique(np.concatenate([m.ravel() for m in data.train.masks]))
    assert labels.tolist() == [0, 1]  # both classes, no void
    membrane = float(np.mean([m.mean() for m in data.train.masks]))
    assert 0.03 < membrane < 0.4, membrane  # a thin structure, not empty, not most of the image


def test_rank_configs_can_draw_augmentation_alone(tiny_study, runs_root):
    """--rank-params 'aug.*': every configuration trains the baseline's model, optimizer, schedule
    and loss, and only the augmentation parameters vary."""
    from automl.study.runner import prepare
    from tests.conftest import TINY_SPACE

    # a baseline that sets every parameter, as the shipped spaces' do
    space = {**TINY_SPACE, "baseline": {**TINY_SPACE["baseline"], "batch_size": 8, "cosine.warmup_frac": 0.0,
                                        "loss.dice": 0.0, "aug.color_jitter": 0.0, "aug.target_crop": 0.0}}
    prep = prepare(load_study_file(tiny_study(space=space), runs_root=runs_root))
    configs = budget.rank_configs(prep, 5, seed=0, epochs=2, params=("aug.*",))
    base = configs[0]
    for cfg in configs[1:]:
        assert (cfg.model, cfg.optimizer, cfg.schedule, cfg.loss, cfg.batch_size) == \
            (base.model, base.optimizer, base.schedule, base.loss, base.batch_size)
    assert len({c.augment for c in configs}) == 5  # each draw its own augmentation
    assert len({c.optimizer for c in budget.rank_configs(prep, 5, seed=0, epochs=2)}) > 1  # all drawn
