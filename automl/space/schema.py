"""The search space file (``search_spaces/*.yaml``), validated at the edge.

Branches (``optimizer``, ``schedule``) are conditional: a branch's parameters are sampled only
when that branch is chosen, under the names ``<branch>.<param>`` so that TPE never mixes the
learning-rate range of SGD with that of AdamW.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from automl import registry
from automl.errors import ConfigError
from automl.space.params import Const, Param, to_param
from automl.yaml_file import format_validation_error, read_yaml

P = Annotated[Param, BeforeValidator(to_param)]


def _const(v: Any) -> Param:
    return Const(value=v)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def searchable(cls) -> tuple[str, ...]:
        """The section's search parameters (its fields declared as ``P``), in declaration order:
        the order the sampler suggests them in, so part of what a seeded study reproduces."""
        return tuple(name for name, f in cls.model_fields.items() if f.annotation == Param)

    def params(self) -> dict[str, Param]:
        """field name → its parameter, for each search parameter of this section."""
        return {name: getattr(self, name) for name in self.searchable()}


class ModelSpace(_Section):
    architectures: list[str] = Field(min_length=1)
    encoders: list[str] = Field(min_length=1)
    encoder_depth: P = Field(default_factory=lambda: _const(5))
    encoder_weights: str | None = None
    aux_head: P = Field(default_factory=lambda: _const(False))

    @field_validator("architectures")
    @classmethod
    def _archs(cls, v: list[str]) -> list[str]:
        return [registry.canonical_architecture(a) for a in v]

    @field_validator("encoders")
    @classmethod
    def _encoders(cls, v: list[str]) -> list[str]:
        return [registry.check_encoder(e) for e in v]

    @field_validator("encoder_depth")
    @classmethod
    def _depth(cls, v: Param) -> Param:
        if any(not isinstance(d, int) or not 3 <= d <= 5 for d in v.values()):
            raise ValueError("encoder_depth values must be integers in 3..5")
        return v


class OptimizerBranch(_Section):
    lr: P
    weight_decay: P = Field(default_factory=lambda: _const(0.0))
    momentum: P = Field(default_factory=lambda: _const(0.9))
    nesterov: P = Field(default_factory=lambda: _const(False))


class ScheduleBranch(_Section):
    warmup_frac: P = Field(default_factory=lambda: _const(0.0))
    power: P = Field(default_factory=lambda: _const(0.9))


class AugmentSpace(_Section):
    crop: tuple[int, int] = Field(description="training crop (height, width)")
    scale_min: P = Field(default_factory=lambda: _const(1.0))
    scale_max: P = Field(default_factory=lambda: _const(1.0))
    hflip: P = Field(default_factory=lambda: _const(0.5))
    vflip: P = Field(default_factory=lambda: _const(0.0))
    color_jitter: P = Field(default_factory=lambda: _const(0.0))
    blur_noise: P = Field(default_factory=lambda: _const(0.0))
    target_crop: P = Field(default_factory=lambda: _const(0.0))
    rotate: P = Field(default_factory=lambda: _const(0.0), description="largest rotation, degrees")

    @field_validator("crop", mode="before")
    @classmethod
    def _square(cls, v: Any) -> Any:
        return (v, v) if isinstance(v, int) else v

    @model_validator(mode="after")
    def _scales(self) -> AugmentSpace:
        if max(self.scale_min.values()) > min(self.scale_max.values()):
            raise ValueError("augment: every scale_min value must be <= every scale_max value")
        if min(self.crop) < 32 or any(c % 32 for c in self.crop):
            # Training feeds crops to the model unpadded, and SMP's encoders need sides divisible
            # by their output stride (32 at depth 5).
            raise ValueError(f"augment.crop: height and width must be multiples of 32 (e.g. 96, 128, 384); "
                             f"got {list(self.crop)}")
        return self


@registry.loss_weights
class LossSpace(_Section):
    ce: P = Field(default_factory=lambda: _const(1.0))
    dice: P = Field(default_factory=lambda: _const(0.0))
    focal: P = Field(default_factory=lambda: _const(0.0))
    lovasz: P = Field(default_factory=lambda: _const(0.0))
    aux: P = Field(default_factory=lambda: _const(0.0))

    @model_validator(mode="after")
    def _one_always_on(self) -> LossSpace:
        # Guarantee at validation time that no sample can switch every loss term off.
        if not any(min(getattr(self, t).values()) > 0 for t in registry.LOSS_TERMS):
            raise ValueError(f"loss: at least one of {registry.main_loss_terms()} must be > 0 in every sample "
                             "(e.g. `ce: 1.0`, or `ce: {low: 0.5, high: 1.0}`)")
        return self


class SearchSpace(_Section):
    model: ModelSpace
    optimizer: dict[str, OptimizerBranch] = Field(min_length=1)
    schedule: dict[str, ScheduleBranch] = Field(min_length=1)
    batch_size: P
    augment: AugmentSpace
    loss: LossSpace = Field(default_factory=LossSpace)
    # Parameter values for the first, enqueued trial: a sane default recipe.
    baseline: dict[str, Any] = Field(default_factory=dict)
    # More recipes, enqueued after the baseline in this order (a flat search only): with a budget
    # of a handful of trials, known-good starting points beat the sampler's random start-up draws.
    # Each sets some or all parameters; the sampler fills in the rest.
    portfolio: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("optimizer", "schedule")
    @classmethod
    def _known_branches(cls, v: dict, info: ValidationInfo) -> dict:
        valid = {"optimizer": registry.OPTIMIZERS, "schedule": registry.SCHEDULES}[info.field_name]
        bad = sorted(set(v) - set(valid))
        if bad:
            raise ValueError(f"unknown {info.field_name} {bad}; valid: {', '.join(valid)}")
        return v

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: Param) -> Param:
        if any(not isinstance(b, int) or b < 1 for b in v.values()):
            raise ValueError("batch_size values must be positive integers")
        return v


def load_search_space(path: Path) -> SearchSpace:
    doc = read_yaml(path)
    try:
        return SearchSpace.model_validate(doc)
    except ValidationError as err:
        raise ConfigError(format_validation_error(str(path), err, SearchSpace)) from None
