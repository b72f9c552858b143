"""Each search parameter is declared once: the space schema and TrialConfig agree field by field,
the sampler searches every field the schema declares, and the trial note shows every field."""

from __future__ import annotations

import copy
from typing import Any, Literal, get_args, get_origin

import optuna
import pytest
from pydantic import BaseModel, ValidationError

from automl import registry
from automl.space.sample import AUG_PREFIX, LOSS_PREFIX, ResolvedSpace
from automl.space.schema import AugmentSpace, LossSpace, ModelSpace, OptimizerBranch, ScheduleBranch, SearchSpace
from automl.trial.losses import SegmentationLoss
from automl.trial_config import (
    AugmentSpec,
    DataSpec,
    LossSpec,
    ModelSpec,
    OptimizerSpec,
    ScheduleSpec,
    TrialConfig,
)
from automl.view.notes import NOT_IN_NOTE, config_rows
from tests.conftest import TINY_SPACE

DATA = DataSpec(classes=("a", "b", "c"))
# space section → TrialConfig section, and the TrialConfig fields that are set from elsewhere
SECTIONS = {
    "model": (ModelSpace, ModelSpec, {"arch", "encoder", "encoder_weights"}),  # the sampled pair; a constant
    "optimizer": (OptimizerBranch, OptimizerSpec, {"name"}),                   # the branch sampled
    "schedule": (ScheduleBranch, ScheduleSpec, {"name"}),
    "augment": (AugmentSpace, AugmentSpec, {"crop_height", "crop_width"}),     # augment.crop
    "loss": (LossSpace, LossSpec, set()),
}


def _config() -> TrialConfig:
    """A config whose every field shows in the note: the branches that use momentum and power."""
    return TrialConfig(seed=0, epochs=3, batch_size=8, data=DATA, schedule_epochs=6,
                       model=ModelSpec(arch="Unet", encoder="resnet18", aux_head=True),
                       optimizer=OptimizerSpec(name="sgd", lr=1e-3), schedule=ScheduleSpec(name="poly"),
                       loss=LossSpec(ce=1.0, dice=0.5, focal=0.25, lovasz=0.125, aux=0.2),
                       augment=AugmentSpec(crop_height=64, crop_width=64))


def _candidates(annotation: Any, value: Any) -> list:
    if get_origin(annotation) is Literal:
        return [v for v in get_args(annotation) if v != value]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1]
    if isinstance(value, float):
        return [value / 2 if value else 0.25, value + 0.25]
    if value is None:
        return ["weights.pth", 100]
    return [value + "x"] if isinstance(value, str) else []


def _changed(spec: BaseModel, name: str) -> BaseModel:
    """``spec`` with field ``name`` set to another value its model accepts."""
    for value in _candidates(type(spec).model_fields[name].annotation, getattr(spec, name)):
        try:
            return type(spec).model_validate({**spec.model_dump(), name: value})
        except ValidationError:
            continue
    raise AssertionError(f"test helper: no other valid value for {type(spec).__name__}.{name}")


@pytest.mark.parametrize("section", SECTIONS)
def test_space_and_trial_config_agree_field_by_field(section):
    space_cls, spec_cls, elsewhere = SECTIONS[section]
    searched, fields = set(space_cls.searchable()), set(spec_cls.model_fields)
    assert elsewhere <= fields
    assert not searched - fields, f"{section}: searched but not in {spec_cls.__name__}: {searched - fields}"
    assert not fields - elsewhere - searched, \
        f"{section}: in {spec_cls.__name__} but not searchable in {space_cls.__name__}: {fields - elsewhere - searched}"


def test_every_trial_config_section_has_a_space_section():
    sections = {k for k, v in _config() if isinstance(v, BaseModel)} - set(NOT_IN_NOTE)
    assert sections == set(SECTIONS) and sections <= set(SearchSpace.model_fields)


def test_loss_terms_are_the_registry():
    assert list(LossSpec.model_fields) == list(LossSpace.model_fields) == [*registry.LOSS_TERMS, registry.AUX_LOSS]
    every_term = LossSpec(**dict.fromkeys(registry.LOSS_TERMS, 1.0))
    assert len(SegmentationLoss(every_term, 3, 255).terms) == len(registry.LOSS_TERMS)
    with pytest.raises(TypeError, match="registered terms"):
        registry.loss_weights(ModelSpec)


def _space_with_every_parameter_set(opt: str, sched: str) -> tuple[dict, dict[str, tuple[str, str, Any]]]:
    """TINY_SPACE with one branch each and every searchable field a one-value choice of a non-default
    value; and Optuna name → (TrialConfig section, field, that value)."""
    doc = copy.deepcopy(TINY_SPACE)
    doc["optimizer"], doc["schedule"] = {opt: {}}, {sched: {}}
    base = {"model": ModelSpec(arch="Unet", encoder="resnet18"), "optimizer": OptimizerSpec(name=opt, lr=1e-3),
            "schedule": ScheduleSpec(name=sched), "augment": AugmentSpec(crop_height=32, crop_width=32),
            "loss": LossSpec()}
    where = {"model": (doc["model"], ""), "optimizer": (doc["optimizer"][opt], f"{opt}."),
             "schedule": (doc["schedule"][sched], f"{sched}."), "augment": (doc["augment"], f"{AUG_PREFIX}."),
             "loss": (doc["loss"], f"{LOSS_PREFIX}.")}
    expected = {}
    for section, (space_cls, _, _) in SECTIONS.items():
        node, prefix = where[section]
        for name in space_cls.searchable():
            value = getattr(_changed(base[section], name), name)
            node[name] = {"choices": [value]}
            expected[prefix + name] = (section, name, value)
    return doc, expected


def test_every_space_parameter_is_sampled_into_the_trial_config():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    opts, scheds = registry.OPTIMIZERS, registry.SCHEDULES
    for i in range(max(len(opts), len(scheds))):  # every branch once
        opt, sched = opts[i % len(opts)], scheds[i % len(scheds)]
        doc, expected = _space_with_every_parameter_set(opt, sched)
        space = ResolvedSpace(SearchSpace.model_validate(doc), ["Unet/resnet18"])
        trial = study.ask()
        cfg = space.sample(trial, data=DATA, epochs=2, seed=0)
        assert set(space.parameters()) - {"model", "optimizer", "schedule", "batch_size"} == set(expected)
        for param, (section, name, value) in expected.items():
            assert trial.params.get(param) == value, f"{param} is not searched"
            assert getattr(getattr(cfg, section), name) == value, f"{param} does not reach TrialConfig.{section}"
        study.tell(trial, 0.0)


def _shown_fields(cfg: TrialConfig) -> list[tuple[str, BaseModel, str]]:
    """(path, model, field) of every field the note should show."""
    out = [(k, cfg, k) for k, v in cfg if k not in NOT_IN_NOTE and not isinstance(v, BaseModel)]
    for section, spec in cfg:
        if isinstance(spec, BaseModel) and section not in NOT_IN_NOTE:
            out += [(f"{section}.{k}", spec, k) for k in type(spec).model_fields]
    return out


def test_every_trial_config_field_shows_in_the_note():
    cfg = _config()
    rows = config_rows(cfg)
    shown = _shown_fields(cfg)
    assert len(shown) > 30
    for path, spec, name in shown:
        changed = _changed(spec, name)
        section = path.partition(".")[0]
        other = changed if spec is cfg else cfg.model_copy(update={section: changed})
        assert config_rows(other) != rows, f"the trial note does not show {path}"


# ------------------------------------------------------------- one parameter end to end: aug.rotate

def test_rotate_is_searched_recorded_and_shown():
    doc = copy.deepcopy(TINY_SPACE)
    doc["augment"]["rotate"] = {"low": 0.0, "high": 15.0}
    space = ResolvedSpace(SearchSpace.model_validate(doc), ["Unet/resnet18"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    cfg = space.sample(trial, data=DATA, epochs=2, seed=0)
    assert 0 < trial.params["aug.rotate"] <= 15 and cfg.augment.rotate == trial.params["aug.rotate"]
    assert cfg.to_dict()["augment"]["rotate"] == cfg.augment.rotate  # user_attrs["config"]
    assert f"rotate {cfg.augment.rotate:.3g}" in dict(config_rows(cfg))["augmentation"]
    # absent from the space: a constant 0, never suggested
    assert "aug.rotate" not in ResolvedSpace(SearchSpace.model_validate(TINY_SPACE), ["Unet/resnet18"]).parameters()


def test_configs_stored_before_rotate_load_with_it_off():
    stored = _config().to_dict()
    del stored["augment"]["rotate"]
    assert TrialConfig.from_dict(stored).augment.rotate == 0.0


def test_rotate_turns_image_and_mask_and_round_trips_through_albumentations_yaml(tmp_path):
    import albumentations as A
    import numpy as np

    from automl.trial.augment import train_transform

    size, ignore = 64, 255
    assert "Rotate" not in str(A.to_dict(train_transform(AugmentSpec(crop_height=size, crop_width=size), ignore)))
    t = train_transform(AugmentSpec(crop_height=size, crop_width=size, hflip=0.0, rotate=15.0), ignore)
    path = tmp_path / "train_transform.yaml"
    A.save(t, str(path), data_format="yaml")  # as the bundle writes it
    loaded = A.load(str(path), data_format="yaml")
    assert A.to_dict(loaded) == A.to_dict(t) and "Rotate" in path.read_text()

    mask = np.kron(np.indices((8, 8)).sum(0) % 2 * 2, np.ones((8, 8))).astype(np.uint8)  # 0/2 checkerboard
    image = np.full((size, size, 3), 200, np.uint8)
    t.set_random_seed(0)
    loaded.set_random_seed(0)
    turned = 0
    for _ in range(8):
        a, b = t(image=image, mask=mask), loaded(image=image, mask=mask)
        assert np.array_equal(a["mask"], b["mask"]) and np.array_equal(a["image"], b["image"])
        assert set(np.unique(a["mask"])) <= {0, 2, ignore}  # nearest: no label 1 between 0 and 2
        assert a["mask"][size // 2, size // 2] != ignore and (a["image"][size // 2, size // 2] == 200).all()
        if a["mask"][0, 0] == ignore:  # a corner the image no longer covers (angles under ~1° leave none)
            turned += 1
            assert (a["image"][0, 0] == 0).all()
    assert turned >= 5
