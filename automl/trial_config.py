"""The resolved trial config: every decision a trial makes, in one typed, serialisable object.

The search space samples it, the trial trains from it, the final stage retrains from it and
the bundle writes it out as ``recipe.yaml``. Nothing is re-derived on the way.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from automl import registry
from automl.config import LabelMap

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Frozen):
    arch: str
    encoder: str
    encoder_depth: int = Field(5, ge=3, le=5)
    # None (random init), "imagenet" (SMP/timm download or HF cache), or a local weights file.
    encoder_weights: str | None = None
    aux_head: bool = False


class OptimizerSpec(_Frozen):
    name: Literal["adamw", "adam", "sgd"]
    lr: float = Field(gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False


class ScheduleSpec(_Frozen):
    name: Literal["cosine", "poly", "onecycle", "constant"]
    warmup_frac: float = Field(0.0, ge=0, lt=1)
    power: float = Field(0.9, gt=0)


@registry.loss_weights
class LossSpec(_Frozen):
    ce: float = Field(1.0, ge=0)
    dice: float = Field(0.0, ge=0)
    focal: float = Field(0.0, ge=0)
    lovasz: float = Field(0.0, ge=0)
    aux: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _one_main_term(self) -> LossSpec:
        if sum(getattr(self, t) for t in registry.LOSS_TERMS) <= 0:
            raise ValueError(f"loss: at least one of {registry.main_loss_terms()} must be > 0")
        return self


class AugmentSpec(_Frozen):
    crop_height: int = Field(ge=32)
    crop_width: int = Field(ge=32)
    scale_min: float = Field(1.0, gt=0)
    scale_max: float = Field(1.0, gt=0)
    hflip: float = Field(0.5, ge=0, le=1)
    vflip: float = Field(0.0, ge=0, le=1)
    color_jitter: float = Field(0.0, ge=0, le=1)
    blur_noise: float = Field(0.0, ge=0, le=1)
    target_crop: float = Field(0.0, ge=0, le=1)
    # Largest rotation in degrees; 0 (off) is also what a config stored before it existed means.
    rotate: float = Field(0.0, ge=0, le=180)

    @model_validator(mode="after")
    def _scale_order(self) -> AugmentSpec:
        if self.scale_min > self.scale_max:
            raise ValueError(f"augment: scale_min {self.scale_min} > scale_max {self.scale_max}")
        return self


class DataSpec(_Frozen):
    """What the model needs to know about the data, so a recipe is self-contained."""

    classes: tuple[str, ...]
    ignore_index: int = 255
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pad_divisor: int = 32
    # How the masks' raw values or colours became these classes (data.label_map); the bundle
    # records it so predictions can be turned back into them. None: masks held class indices.
    label_map: LabelMap | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class TrialConfig(_Frozen):
    version: Literal[1] = 1
    seed: int
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    data: DataSpec
    model: ModelSpec
    optimizer: OptimizerSpec
    schedule: ScheduleSpec
    loss: LossSpec
    augment: AugmentSpec
    # When set, the LR schedule spans this many epochs and training stops after `epochs`: a
    # search trial is then the start of a longer run (budget.trial_schedule_epochs). None: the
    # schedule spans `epochs`, as in the final retrain.
    schedule_epochs: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _schedule_covers_training(self) -> TrialConfig:
        if self.schedule_epochs is not None and self.schedule_epochs < self.epochs:
            raise ValueError(f"schedule_epochs ({self.schedule_epochs}) must be at least epochs ({self.epochs})")
        return self

    @property
    def schedule_span(self) -> int:
        """Epochs the LR schedule spans."""
        return self.schedule_epochs or self.epochs

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, d: dict) -> TrialConfig:
        return cls.model_validate(d)

    def with_changes(self, **changes) -> TrialConfig:
        """A copy with top-level fields replaced, validated again."""
        return TrialConfig.model_validate({**self.to_dict(), **changes})

    def summary(self) -> str:
        m, o, s = self.model, self.optimizer, self.schedule
        weights = ((n, getattr(self.loss, n)) for n in registry.LOSS_TERMS)
        terms = "+".join(f"{w:.2g}·{n}" for n, w in weights if w > 0)
        return (f"{m.arch}-{m.encoder} {o.name} lr={o.lr:.2g} wd={o.weight_decay:.1g} "
                f"{s.name} bs={self.batch_size} loss={terms}")
