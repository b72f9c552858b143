"""Names the search space may use: SMP architectures, encoders, optimizers, schedules, losses."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Callable, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from torch import nn

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "poly", "onecycle", "constant")


# Loss terms build lazily so that naming them (the space, TrialConfig) needs no torch.
def _ce(ignore_index: int) -> nn.Module:
    from torch import nn

    return nn.CrossEntropyLoss(ignore_index=ignore_index)


def _dice(ignore_index: int) -> nn.Module:
    from segmentation_models_pytorch import losses as L

    return L.DiceLoss("multiclass", ignore_index=ignore_index, from_logits=True)


def _focal(ignore_index: int) -> nn.Module:
    from segmentation_models_pytorch import losses as L

    return L.FocalLoss("multiclass", ignore_index=ignore_index)


def _lovasz(ignore_index: int) -> nn.Module:
    from segmentation_models_pytorch import losses as L

    return L.LovaszLoss("multiclass", ignore_index=ignore_index, from_logits=True)


# The terms of the main loss, name → builder(ignore_index) of a multiclass loss on logits. The one
# place a term is named: the loss sections of the search space and of TrialConfig carry one
# weight field per term, in this order (the order they are sampled and summed), then AUX_LOSS;
# loss_weights checks that when those classes are defined.
LOSS_TERMS: dict[str, Callable[[int], nn.Module]] = {"ce": _ce, "dice": _dice, "focal": _focal, "lovasz": _lovasz}
AUX_LOSS = "aux"  # the aux classification head's weight: not a term of the main loss

_Weights = TypeVar("_Weights", bound=type[BaseModel])


def loss_weights(cls: _Weights) -> _Weights:
    """Class decorator for a model of loss weights: its fields must be LOSS_TERMS, then AUX_LOSS."""
    fields, expected = list(cls.model_fields), [*LOSS_TERMS, AUX_LOSS]
    if fields != expected:
        raise TypeError(f"{cls.__name__} has loss weight fields {fields}, but the registered terms "
                        f"and the aux weight are {expected} (automl.registry.LOSS_TERMS)")
    return cls


def main_loss_terms() -> str:
    """The terms for an error message: ``ce/dice/focal/lovasz``."""
    return "/".join(LOSS_TERMS)


@lru_cache(maxsize=1)
def architectures() -> dict[str, str]:
    """lower-case name → SMP's canonical class name (``fpn`` → ``FPN``)."""
    import segmentation_models_pytorch as smp

    return {k: v.__name__ for k, v in smp.MODEL_ARCHITECTURES_MAPPING.items()}


@lru_cache(maxsize=1)
def native_encoders() -> tuple[str, ...]:
    import segmentation_models_pytorch as smp

    return tuple(smp.encoders.get_encoder_names())


def canonical_architecture(name: str) -> str:
    archs = architectures()
    if name.lower() not in archs:
        raise ValueError(f"unknown architecture {name!r}; valid: {', '.join(sorted(archs.values()))}")
    return archs[name.lower()]


def check_encoder(name: str) -> str:
    if name.startswith("tu-"):
        import timm

        if not timm.is_model(name[3:]):
            raise ValueError(f"unknown timm encoder {name!r}: timm has no model {name[3:]!r} "
                             "(see timm.list_models())")
        return name
    if name not in native_encoders():
        raise ValueError(f"unknown encoder {name!r}; use one of SMP's encoders "
                         f"({', '.join(native_encoders()[:12])}, ...) or 'tu-<timm model>'")
    return name
