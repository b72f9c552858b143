"""Which trial the final stage takes: the best (feasible) one, or one picked from a Pareto front."""

from __future__ import annotations

import math

import optuna
from optuna.trial import FrozenTrial

from automl.errors import AutoMLError
from automl.study.config import StudyFile


def _feasible(t: FrozenTrial) -> bool:
    return all(v <= 0 for v in t.constraints.values())


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.best_trials if _feasible(t)]


def knee(front: list[FrozenTrial]) -> FrozenTrial:
    """The trial closest to the ideal point once each objective is scaled to [0, 1] over the front
    (mIoU maximised, the others minimised)."""
    n = len(front[0].values)
    lo = [min(t.values[i] for t in front) for i in range(n)]
    hi = [max(t.values[i] for t in front) for i in range(n)]

    def regret(t: FrozenTrial) -> float:
        parts = []
        for i, v in enumerate(t.values):
            span = hi[i] - lo[i] or 1.0
            parts.append((hi[i] - v) / span if i == 0 else (v - lo[i]) / span)
        return math.hypot(*parts)

    return min(front, key=regret)


def select_trial(study: optuna.Study, sf: StudyFile) -> FrozenTrial:
    if not sf.multi_objective:
        try:
            return study.best_trial
        except ValueError:
            raise AutoMLError(f"study {study.study_name} has no completed feasible trial yet") from None
    front = pareto_front(study)
    if not front:
        raise AutoMLError(f"study {study.study_name} has no completed feasible trial yet")
    rule = sf.pareto_pick
    if rule.rule == "knee":
        return knee(front)
    ok = [t for t in front
          if (rule.max_latency_ms is None or t.user_attrs["latency_ms"] <= rule.max_latency_ms)
          and (rule.max_params_m is None or t.user_attrs["params_m"] <= rule.max_params_m)]
    if not ok:
        raise AutoMLError("pareto_pick: no trial on the Pareto front is under the given limit")
    return max(ok, key=lambda t: t.values[0])
