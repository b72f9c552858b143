"""Which trial the final stage takes: the best feasible one, or one picked from a Pareto front.

Feasibility is judged against the study file's *current* limits as well as the constraint values
Optuna stored: a study resumed with a tighter (or a new) ``constraints`` section must not hand
the final stage a model its trials were never checked against (Optuna counts a trial without
constraint values as feasible).
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.config import StudyFile
from automl.errors import AutoMLError


def feasible(t: FrozenTrial, sf: StudyFile) -> bool:
    if any(v > 0 for v in t.constraints.values()):
        return False
    c, ua = sf.constraints, t.user_attrs
    for limit, key in ((c.max_latency_ms, "latency_ms"), (c.max_params_m, "params_m")):
        if limit is not None and (key not in ua or ua[key] > limit):
            return False
    return True


def feasible_complete(study: optuna.Study, sf: StudyFile) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values and feasible(t, sf)]


def _dominates(a: FrozenTrial, b: FrozenTrial, directions: list[optuna.study.StudyDirection]) -> bool:
    sign = [1 if d == optuna.study.StudyDirection.MAXIMIZE else -1 for d in directions]
    better = [s * x >= s * y for s, x, y in zip(sign, a.values, b.values)]
    return all(better) and a.values != b.values


def pareto_front(study: optuna.Study, sf: StudyFile, ok: list[FrozenTrial] | None = None) -> list[FrozenTrial]:
    """The non-dominated feasible trials (Optuna's ``best_trials`` does not know the current
    limits); ``ok``: the feasible complete trials, when the caller has them already."""
    ok = feasible_complete(study, sf) if ok is None else ok
    return [t for t in ok if not any(_dominates(o, t, study.directions) for o in ok)]


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
    ok = feasible_complete(study, sf)
    if not ok:
        raise AutoMLError(f"study {study.study_name} has no completed feasible trial yet")
    if not sf.multi_objective:
        return max(ok, key=lambda t: t.values[0])
    rule = sf.pareto_pick
    if rule.rule == "knee":
        return knee(pareto_front(study, sf, ok))
    # Every feasible trial, not only the front: with objectives [val_miou, params_m] the best trial
    # under a latency limit need not be on the params front.
    under = [t for t in ok
             if (rule.max_latency_ms is None or t.user_attrs.get("latency_ms", math.inf) <= rule.max_latency_ms)
             and (rule.max_params_m is None or t.user_attrs.get("params_m", math.inf) <= rule.max_params_m)]
    if not under:
        raise AutoMLError("pareto_pick: no completed feasible trial is under the given limit")
    return max(under, key=lambda t: t.values[0])


def selected_or_none(study: optuna.Study, sf: StudyFile) -> FrozenTrial | None:
    """:func:`select_trial`, or None while there is nothing to select (for summaries and notes)."""
    try:
        return select_trial(study, sf)
    except AutoMLError:
        return None
