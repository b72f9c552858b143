"""Work after the retrain that the shipped model does not need: INT8 and the holdout's reference
scores. `automl final` does all of it; `automl run` does each only when its price fits in
``run.extras_share`` of the budget (:func:`automl.overnight.choose_extras`), because at short
budgets every second after the retrain is a second the retrain did not train, and a model still
ships without them (ONNX fp32, its holdout score). The report gives the `automl final
--reuse-model` command that adds them later to the same retrained model.

Each extra is a field here, declared once: pricing (:mod:`automl.overnight`) and the final
(:mod:`automl.final.pipeline`) both read these names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Extras:
    # calibration, its val score with and without TTA, fallbacks; off: the bundle ships ONNX fp32
    int8: bool = field(default=True, metadata={"label": "INT8 quantization"})
    # beside the shipped variant, the same without TTA (what TTA gives) and the torch fp32 model
    # (what INT8 is judged against)
    holdout_references: bool = field(default=True, metadata={
        "label": "the holdout's reference scores (without TTA, torch fp32)"})
    # (extra, why it was left out) for each extra left out: the report's notes
    why: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def names() -> tuple[str, ...]:
        """The extras, in the order `automl run` prices them."""
        return tuple(f.name for f in dataclasses.fields(Extras) if "label" in f.metadata)

    @staticmethod
    def label(name: str) -> str:
        return next(f.metadata["label"] for f in dataclasses.fields(Extras) if f.name == name)

    def left_out(self, name: str) -> str | None:
        """Why ``name`` was left out, or None."""
        return dict(self.why).get(name)

    def notes(self) -> list[str]:
        return [line for _, line in self.why]

    def as_dict(self) -> dict:
        return {**{n: getattr(self, n) for n in self.names()}, "left_out": dict(self.why)}


ALL = Extras()
