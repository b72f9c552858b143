"""Search space → trial.suggest_* → TrialConfig: conditionals, incompatible pairs, baseline."""

from __future__ import annotations

import copy

import optuna

from automl.space.sample import ResolvedSpace
from automl.space.schema import SearchSpace
from automl.trial.compat import compatible_pairs
from automl.trial_config import DataSpec, TrialConfig
from tests.conftest import TINY_SPACE

DATA = DataSpec(classes=("a", "b", "c"), ignore_index=255)


def _sample_many(space: ResolvedSpace, n: int = 40) -> list[tuple[dict, TrialConfig]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        cfg = space.sample(trial, data=DATA, epochs=2, seed=trial.number)
        out.append((trial.params, cfg))
        study.tell(trial, 0.0)
    return out


def test_conditional_parameters_follow_their_branch():
    doc = copy.deepcopy(TINY_SPACE)
    doc["loss"]["aux"] = {"low": 0.1, "high": 0.5}
    space = ResolvedSpace(SearchSpace.model_validate(doc), ["Unet/resnet18", "Linknet/resnet18"])
    seen = set()
    for params, cfg in _sample_many(space):
        seen.add(cfg.optimizer.name)
        assert params["optimizer"] == cfg.optimizer.name
        if cfg.optimizer.name == "sgd":
            assert "sgd.lr" in params and "sgd.nesterov" in params and "adamw.lr" not in params
            assert 1e-7 <= cfg.optimizer.lr <= 1e-6
        else:
            assert "adamw.lr" in params and "sgd.lr" not in params and "sgd.nesterov" not in params
        # the aux-loss weight exists only when the aux head is on
        assert ("loss.aux" in params) == cfg.model.aux_head
        assert (0.1 <= cfg.loss.aux <= 0.5) if cfg.model.aux_head else cfg.loss.aux == 0.0
        assert TrialConfig.from_dict(cfg.to_dict()) == cfg  # serialisable round trip
    assert seen == {"adamw", "sgd"}


def test_incompatible_pairs_are_never_sampled():
    pairs, dropped = compatible_pairs(["Unet", "DPT", "FPN"], ["resnet18"], (3,), (64, 64))
    assert "DPT/resnet18" in dropped and "tu-" in dropped["DPT/resnet18"]       # DPT wants timm encoders
    assert "FPN/resnet18" in dropped and "output" in dropped["FPN/resnet18"]    # wrong stride at depth 3
    assert pairs == ["Unet/resnet18"]
    doc = copy.deepcopy(TINY_SPACE)
    doc["model"]["architectures"] = ["Unet", "DPT", "FPN"]
    space = ResolvedSpace(SearchSpace.model_validate(doc), pairs)
    assert {cfg.model.arch for _, cfg in _sample_many(space, 10)} == {"Unet"}


def test_constants_are_not_suggested_but_reach_the_config():
    space = ResolvedSpace(SearchSpace.model_validate(TINY_SPACE), ["Unet/resnet18"])
    params, cfg = _sample_many(space, 1)[0]
    assert "model" not in params                      # one pair: nothing to choose
    assert "aug.hflip" not in params and cfg.augment.hflip == 0.5
    assert cfg.model.encoder_depth == 3 and cfg.augment.crop_height == 32
