"""Bundle variants: one model, run by one backend at one precision, with or without TTA.

A variant's ``key`` names it in report.json (``evaluation``, ``latency``, ``tta.latency_cost_ms``);
its ``label`` names it in report.md, the console table, report.png and
``default_predictor.variant``. Both are spelled from the fields, and :data:`VARIANTS` is built
from the axes below, so another model, backend or precision is a change to these tables, not
to the code that scores, times or reports variants.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import total_ordering
from typing import Iterable, Literal

Backend = Literal["torch", "onnxruntime"]
Precision = Literal["fp32", "int8"]
Model = Literal["teacher", "student"]

# The axes, each in report order (the order of rows in report.md and of keys in report.json).
# Each backend lists the precisions a bundle can ship for it: the torch model is fp32 only.
PRECISIONS: dict[Backend, tuple[Precision, ...]] = {"torch": ("fp32",), "onnxruntime": ("fp32", "int8")}
BACKENDS: tuple[Backend, ...] = tuple(PRECISIONS)
ALL_PRECISIONS: tuple[Precision, ...] = tuple(dict.fromkeys(p for ps in PRECISIONS.values() for p in ps))
# The teacher is the retrained model itself, so its keys and labels carry no model name: they
# are the ones every report has used. A student (distilled from it) is named in front.
MODELS: dict[Model, str] = {"teacher": "", "student": "student"}
# How a backend is spelled in keys and in labels.
_BACKEND_KEY: dict[Backend, str] = {"torch": "torch", "onnxruntime": "ort"}
_BACKEND_LABEL: dict[Backend, str] = {"torch": "torch", "onnxruntime": "ORT"}


def choices(names: Iterable[str]) -> str:
    """``'a', 'b' or 'c'``, for error messages."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


@total_ordering
@dataclass(frozen=True)
class Variant:
    """One row of the final report; ordered like :data:`VARIANTS`."""

    backend: Backend
    precision: Precision = "fp32"
    tta: bool = False
    model: Model = "teacher"

    def __post_init__(self) -> None:
        if self.backend not in PRECISIONS:
            raise ValueError(f"backend must be {choices(BACKENDS)}, not {self.backend!r}")
        if self.precision not in PRECISIONS[self.backend]:
            offered = [b for b in BACKENDS if self.precision in PRECISIONS[b]]
            if not offered:
                raise ValueError(f"precision must be {choices(ALL_PRECISIONS)}, not {self.precision!r}")
            raise ValueError(f"precision {self.precision!r} needs "
                             + " or ".join(f"backend={b!r}" for b in offered)
                             + f"; the {self.backend} model is {'/'.join(PRECISIONS[self.backend])}")
        if not isinstance(self.tta, bool):
            raise ValueError(f"tta must be True or False, not {self.tta!r}")
        if self.model not in MODELS:
            raise ValueError(f"model must be {choices(MODELS)}, not {self.model!r}")

    @property
    def key(self) -> str:
        """``ort_int8_tta``: the name in report.json."""
        parts = (MODELS[self.model], _BACKEND_KEY[self.backend], self.precision, "tta" if self.tta else "")
        return "_".join(p for p in parts if p)

    @property
    def label(self) -> str:
        """``ORT int8 + TTA``: the name people read."""
        name = " ".join(p for p in (MODELS[self.model], _BACKEND_LABEL[self.backend], self.precision) if p)
        return name + (" + TTA" if self.tta else "")

    def with_tta(self, tta: bool = True) -> Variant:
        return replace(self, tta=tta)

    @classmethod
    def parse(cls, key: str) -> Variant:
        """The variant named ``key`` in report.json."""
        try:
            return _BY_KEY[key]
        except (KeyError, TypeError):
            raise ValueError(f"unknown bundle variant {key!r}; known: {', '.join(_BY_KEY)}") from None

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Variant):
            return NotImplemented
        return _RANK[self] < _RANK[other]


VARIANTS: tuple[Variant, ...] = tuple(Variant(b, p, t, m) for m in MODELS for b in BACKENDS for p in PRECISIONS[b]
                                      for t in (False, True))
_RANK = {v: i for i, v in enumerate(VARIANTS)}
_BY_KEY = {v.key: v for v in VARIANTS}

TORCH_FP32 = Variant("torch", "fp32")
ORT_FP32 = Variant("onnxruntime", "fp32")
ORT_INT8 = Variant("onnxruntime", "int8")
