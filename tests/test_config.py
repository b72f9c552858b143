"""Study-file and search-space validation: one clear error naming the field, before any data."""

from __future__ import annotations

import copy

import pytest
import torch

from automl.config import load_study_file, parse_duration
from automl.errors import ConfigError
from automl.space.schema import load_search_space
from automl.study.runner import prepare
from automl.trial.engine import Runtime, loader_workers
from tests.conftest import TINY_SPACE, tiny_study_doc, write_yaml


def _space_error(tmp_path, mutate) -> str:
    doc = copy.deepcopy(TINY_SPACE)
    mutate(doc)
    with pytest.raises(ConfigError) as exc:
        load_search_space(write_yaml(tmp_path / "space.yaml", doc))
    return str(exc.value)


def _study_error(tmp_path, **changes) -> str:
    with pytest.raises(ConfigError) as exc:
        load_study_file(write_yaml(tmp_path / "s.yaml", tiny_study_doc(**changes)))
    return str(exc.value)


def test_unknown_key_is_named(tmp_path):
    msg = _study_error(tmp_path, **{"budget.n_trails": 3})
    assert "budget.n_trails: unknown key" in msg and "s.yaml" in msg
    assert "valid: n_trials, timeout, trial_epochs" in msg


def test_wrong_type_is_named(tmp_path):
    assert "budget.trial_epochs" in _study_error(tmp_path, **{"budget.trial_epochs": "many"})


def test_unknown_pruner_lists_choices(tmp_path):
    msg = _study_error(tmp_path, **{"pruner.type": "patient"})
    assert "pruner.type" in msg and "hyperband" in msg and "median" in msg


def test_bad_duration(tmp_path):
    assert "budget.timeout" in _study_error(tmp_path, **{"budget.timeout": "soon"})
    assert parse_duration("1.5h") == 5400 and parse_duration("90") == 90 and parse_duration("15m") == 900


def test_ignore_index_colliding_with_a_class(tmp_path):
    assert "ignore_index" in _study_error(tmp_path, **{"data.ignore_index": 2})


def test_inverted_range(tmp_path):
    msg = _space_error(tmp_path, lambda d: d["optimizer"]["adamw"].update(lr={"low": 1e-2, "high": 1e-4}))
    assert "optimizer.adamw.lr" in msg and "inverted" in msg


def test_unknown_architecture_lists_valid_ones(tmp_path):
    msg = _space_error(tmp_path, lambda d: d["model"].update(architectures=["Unet", "SegNet"]))
    assert "model.architectures" in msg and "SegNet" in msg and "DeepLabV3Plus" in msg


def test_unknown_encoder(tmp_path):
    msg = _space_error(tmp_path, lambda d: d["model"].update(encoders=["resnet19"]))
    assert "model.encoders" in msg and "resnet19" in msg and "tu-" in msg


def test_unknown_timm_encoder(tmp_path):
    assert "tu-not_a_model" in _space_error(tmp_path, lambda d: d["model"].update(encoders=["tu-not_a_model"]))


def test_unknown_loss_term(tmp_path):
    msg = _space_error(tmp_path, lambda d: d["loss"].update(tversky=0.5))
    assert "loss.tversky: unknown key (valid: ce, dice, focal, lovasz, aux)" in msg


def test_unknown_transform(tmp_path):
    msg = _space_error(tmp_path, lambda d: d["augment"].update(elastic=0.3))
    assert "augment.elastic: unknown key" in msg and "hflip" in msg and "target_crop" in msg


def test_crop_not_a_multiple_of_32_is_rejected(tmp_path):
    # the encoders need sides divisible by 32, and training crops are not padded
    msg = _space_error(tmp_path, lambda d: d["augment"].update(crop=[100, 96]))
    assert "augment.crop" in msg and "multiples of 32" in msg and "[100, 96]" in msg


def test_unknown_optimizer_and_schedule(tmp_path):
    assert "lamb" in _space_error(tmp_path, lambda d: d["optimizer"].update(lamb={"lr": 1e-3}))
    assert "step" in _space_error(tmp_path, lambda d: d["schedule"].update(step={}))


def test_loss_that_can_be_all_zero_is_rejected(tmp_path):
    msg = _space_error(tmp_path, lambda d: d["loss"].update(ce={"low": 0.0, "high": 1.0}))
    assert "at least one of ce/dice/focal/lovasz" in msg


def test_config_errors_come_before_data_is_read(tmp_path):
    # The data folder does not exist, but the broken space must be what the user hears about.
    doc = copy.deepcopy(TINY_SPACE)
    doc["model"]["encoders"] = ["nope"]
    write_yaml(tmp_path / "space.yaml", doc)
    sf = load_study_file(write_yaml(tmp_path / "s.yaml", tiny_study_doc(**{"data.root": str(tmp_path / "missing"),
                                                                            "data.synthetic": None})))
    with pytest.raises(ConfigError, match="nope"):
        prepare(sf)


def test_baseline_outside_the_space(tmp_path, tiny_study, runs_root):
    space = copy.deepcopy(TINY_SPACE)
    space["baseline"] = {"adamw.lr": 1.0, "bogus": 1}
    sf = load_study_file(tiny_study(space=space), runs_root=runs_root)
    with pytest.raises(ConfigError) as exc:
        prepare(sf)
    assert "baseline.adamw.lr" in str(exc.value) and "baseline.bogus" in str(exc.value)


def test_portfolio_recipes_are_checked_and_enqueued_after_the_baseline(tiny_study, runs_root):
    from automl.study.runner import setup_study

    space = copy.deepcopy(TINY_SPACE)
    space["portfolio"] = [{"optimizer": "sgd", "sgd.lr": 5e-7, "schedule": "constant"}, {"batch_size": 8}]
    prep = prepare(load_study_file(tiny_study(space=space), runs_root=runs_root))
    waiting = setup_study(prep).trials
    assert [t.user_attrs for t in waiting] == [{"baseline": True}, {"portfolio": 0}, {"portfolio": 1}]
    assert waiting[1].system_attrs["fixed_params"] == {"optimizer": "sgd", "sgd.lr": 5e-7, "schedule": "constant"}

    space["portfolio"] = [{"batch_size": 8}, {"sgd.lr": 1.0}]
    with pytest.raises(ConfigError, match=r"portfolio\[1\]\.sgd\.lr"):
        prepare(load_study_file(tiny_study(space=space), runs_root=runs_root))


def test_loader_workers_default_by_device(monkeypatch, tmp_path):
    assert "num_workers" in _study_error(tmp_path, num_workers=-1)
    cpu, cuda = Runtime(torch.device("cpu")), Runtime(torch.device("cuda"))
    assert loader_workers(None, cpu) == 0 and loader_workers(3, cpu) == 3
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    assert loader_workers(None, cuda) == 8 and loader_workers(0, cuda) == 0
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)  # a packed worker's share of the CPU
    assert loader_workers(None, cuda) == 4
