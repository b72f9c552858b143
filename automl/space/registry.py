"""Names the search space may use: SMP architectures, encoders, optimizers, schedules, losses."""

from __future__ import annotations

from functools import lru_cache

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "poly", "onecycle", "constant")
LOSS_TERMS = ("ce", "dice", "focal", "lovasz")


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
