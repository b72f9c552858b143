"""One searchable value: a constant, a categorical choice, or a numeric range.

YAML forms::

    lr: 0.001                                # constant, never sampled
    lr: {low: 1.0e-4, high: 1.0e-2, log: true}
    epochs: {low: 2, high: 8, type: int}
    batch_size: {choices: [4, 8, 16]}
"""

from __future__ import annotations

from typing import Any, Literal, Union

import optuna
from pydantic import BaseModel, ConfigDict, model_validator

Scalar = Union[bool, int, float, str, None]


class Choice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    choices: tuple[Scalar, ...]

    @model_validator(mode="after")
    def _non_empty(self) -> Choice:
        if not self.choices:
            raise ValueError("choices: give at least one value")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def values(self) -> tuple:
        return self.choices

    def contains(self, v: Any) -> bool:
        return v in self.choices


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    low: float
    high: float
    log: bool = False
    step: float | None = None
    type: Literal["float", "int"] = "float"

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"range is inverted: low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("log ranges need low > 0")
        if self.log and self.step is not None:
            raise ValueError("a range cannot be both log and stepped")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def values(self) -> tuple:
        return (self.low, self.high)

    def contains(self, v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and self.low <= v <= self.high


class Const(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    value: Scalar

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return self.value

    def values(self) -> tuple:
        return (self.value,)

    def contains(self, v: Any) -> bool:
        return v == self.value


Param = Union[Choice, Range, Const]


def to_param(raw: Any) -> Param:
    """Turn the YAML form into a Param (used as a pydantic before-validator)."""
    if isinstance(raw, (Choice, Range, Const)):
        return raw
    if isinstance(raw, dict):
        if "choices" in raw:
            return Choice.model_validate(raw)
        if "low" in raw or "high" in raw:
            return Range.model_validate(raw)
        if set(raw) == {"value"}:
            return Const.model_validate(raw)
        raise ValueError(f"expected a constant, {{choices: [...]}} or {{low:, high:}}, got keys {sorted(raw)}")
    if isinstance(raw, (list, tuple)):
        raise ValueError("a bare list is ambiguous: write {choices: [...]} or {low:, high:}")
    return Const(value=raw)
