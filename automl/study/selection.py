"""Which trial the final stage takes: the best feasible one, or one picked from a Pareto front.

Feasibility is judged against the study file's *current* limits as well as the constraint values
Optuna stored: a study resumed with a tighter (or a new) ``constraints`` section must not hand
the final stage a model its trials were never checked against (Optuna counts a trial without
constraint values as feasible).

Single objective: the baseline is the incumbent (see :func:`decide`). The seed probe, the
baseline's config re-run with another seed, measures the noise between seeds; it is never a
candidate itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.config import StudyFile
from automl.errors import AutoMLError
from automl.study.stages import stage_study_name


def feasible(t: FrozenTrial, sf: StudyFile) -> bool:
    if any(v > 0 for v in t.constraints.values()):
        return False
    c, ua = sf.constraints, t.user_attrs
    for limit, key in ((c.max_latency_ms, "latency_ms"), (c.max_params_m, "params_m")):
        if limit is not None and (key not in ua or ua[key] > limit):
            return False
    return True


SEED_PROBE = "seed_probe"  # user attr, set at enqueue, of the baseline's re-run with another seed


def is_probe(t: FrozenTrial) -> bool:
    return bool(t.user_attrs.get(SEED_PROBE))


def _complete_feasible(study: optuna.Study, sf: StudyFile) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values and feasible(t, sf)]


def feasible_complete(study: optuna.Study, sf: StudyFile) -> list[FrozenTrial]:
    """The candidates for selection: complete, feasible, and not a seed probe."""
    return [t for t in _complete_feasible(study, sf) if not is_probe(t)]


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


# The incumbent rule. A challenger's value is one run (one seed); the incumbent's, the mean of n
# runs of the same config with different seeds. With a seed s.d. σ, the lead (challenger − mean)
# has s.d. σ·√(1 + 1/n), and one difference of two seeds, d = |v0 − v1|, estimates σ as d/√2. The
# lead must clear 1.64 s.d. (one-sided 95 %): margin = 1.64 · d/√2 · √(1 + 1/n), which for the
# baseline plus its probe (n = 2) is 1.64 · 0.866 · d. One difference is a rough estimate and can
# be near zero by chance, hence the floor (half a point of mIoU). Without a finished probe the
# noise is not measured, and a challenger must lead by a stated point of mIoU.
NOISE_Z = 1.64
NOISE_FLOOR = 0.005
UNMEASURED_MARGIN = 0.01


def noise_margin(seed_diff: float | None, n_incumbent: int) -> float:
    if seed_diff is None:
        return UNMEASURED_MARGIN
    return max(NOISE_FLOOR, NOISE_Z * seed_diff / math.sqrt(2) * math.sqrt(1 + 1 / max(1, n_incumbent)))


@dataclass(frozen=True)
class Verdict:
    switch: bool  # the challenger replaces the incumbent
    mean: float   # the incumbent's mean over its seeds
    margin: float
    lead: float | None  # challenger − mean; None: no challenger
    why: str


def decide(incumbent: list[float], challenger: float | None, seed_diff: float | None) -> Verdict:
    """Whether a challenger (one run) replaces the incumbent (``incumbent``: its values over
    seeds): only if it leads the incumbent's mean by more than the noise margin. ``seed_diff``:
    the spread between two seeds of one config, None when not measured."""
    mean = sum(incumbent) / len(incumbent)
    margin = noise_margin(seed_diff, len(incumbent))
    noise = "seed noise not measured" if seed_diff is None else f"seed difference {seed_diff:.4f}"
    if challenger is None:
        return Verdict(False, mean, margin, None, "no challenger completed: the incumbent stays")
    lead = challenger - mean
    if lead > margin:
        return Verdict(True, mean, margin, lead, f"the challenger leads by {lead:+.4f}, more than the margin "
                                                 f"{margin:.4f} ({noise}): it replaces the incumbent")
    return Verdict(False, mean, margin, lead, f"the challenger leads by {lead:+.4f}, within the margin "
                                              f"{margin:.4f} ({noise}): the incumbent stays")


@dataclass(frozen=True)
class Selection:
    trial: FrozenTrial
    record: dict | None  # the incumbent rule's decision and figures; None where the rule does not apply


def _seed_diff(study: optuna.Study, sf: StudyFile, incumbent: FrozenTrial) -> float | None:
    """|baseline − probe| in this study; a later stage (no probe of its own) uses stage 0's."""
    probes = [t for t in _complete_feasible(study, sf) if is_probe(t)]
    if probes:
        return abs(probes[0].values[0] - incumbent.values[0])
    if not sf.stages or study.study_name == stage_study_name(sf, 0):
        return None
    try:
        first = optuna.load_study(study_name=stage_study_name(sf, 0), storage=study._storage)
    except KeyError:
        return None
    base = [t for t in _complete_feasible(first, sf) if t.user_attrs.get("baseline")]
    probes = [t for t in _complete_feasible(first, sf) if is_probe(t)]
    return abs(probes[0].values[0] - base[0].values[0]) if base and probes else None


def incumbent_selection(study: optuna.Study, sf: StudyFile, ok: list[FrozenTrial]) -> Selection:
    """The incumbent (the study's start trial: the baseline, or a later stage's start) against the
    best other candidate (single objective)."""
    best = max(ok, key=lambda t: t.values[0])
    incumbent = next((t for t in ok if "baseline" in t.user_attrs), None)
    if not sf.selection.incumbent:
        return Selection(best, None)
    if incumbent is None:
        return Selection(best, {"rule": "incumbent", "decision": "best", "trial": best.number,
                                "why": "the incumbent has no completed feasible trial: the best trial is taken"})
    probes = [t for t in _complete_feasible(study, sf) if is_probe(t)]
    values = [incumbent.values[0], *(t.values[0] for t in probes[:1])]
    seed_diff = _seed_diff(study, sf, incumbent)
    others = [t for t in ok if t.number != incumbent.number]
    challenger = max(others, key=lambda t: t.values[0]) if others else None
    v = decide(values, None if challenger is None else challenger.values[0], seed_diff)
    chosen = challenger if v.switch else incumbent
    record = {
        "rule": "incumbent",
        "incumbent": {"trials": [incumbent.number, *(t.number for t in probes[:1])],
                      "values": [round(x, 4) for x in values], "mean": round(v.mean, 4),
                      "role": "baseline" if incumbent.user_attrs.get("baseline") else "stage start"},
        "noise": {"seed_diff": None if seed_diff is None else round(seed_diff, 4), "margin": round(v.margin, 4),
                  "floor": NOISE_FLOOR, "z": NOISE_Z, "unmeasured_margin": UNMEASURED_MARGIN},
        "challenger": None if challenger is None else {"trial": challenger.number,
                                                       "value": round(challenger.values[0], 4),
                                                       "lead": round(v.lead, 4)},
        "decision": "challenger" if v.switch else "incumbent",
        "trial": chosen.number,
        "why": v.why,
    }
    return Selection(chosen, record)


def selection(study: optuna.Study, sf: StudyFile) -> Selection:
    """The trial the final stage takes, with the incumbent rule's record where it applies."""
    ok = feasible_complete(study, sf)
    if not ok:
        raise AutoMLError(f"study {study.study_name} has no completed feasible trial yet")
    if not sf.multi_objective:
        return incumbent_selection(study, sf, ok)
    return Selection(_pareto_pick(study, sf, ok), None)


def select_trial(study: optuna.Study, sf: StudyFile) -> FrozenTrial:
    return selection(study, sf).trial


def _pareto_pick(study: optuna.Study, sf: StudyFile, ok: list[FrozenTrial]) -> FrozenTrial:
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
    chosen = selection_or_none(study, sf)
    return None if chosen is None else chosen.trial


def selection_or_none(study: optuna.Study, sf: StudyFile) -> Selection | None:
    try:
        return selection(study, sf)
    except AutoMLError:
        return None


def describe(record: dict) -> str:
    """The incumbent rule's decision in one line (status, study note, final report)."""
    if "incumbent" not in record:
        return f"trial #{record['trial']}: {record['why']}"
    inc, noise, ch = record["incumbent"], record["noise"], record["challenger"]
    seeds = ", ".join(f"#{n} {v:.4f}" for n, v in zip(inc["trials"], inc["values"]))
    measured = "not measured" if noise["seed_diff"] is None else f"seed difference {noise['seed_diff']:.4f}"
    against = "no challenger" if ch is None else \
        f"challenger #{ch['trial']} {ch['value']:.4f}, lead {ch['lead']:+.4f}"
    return (f"{inc['role']} {seeds} (mean {inc['mean']:.4f}); {against}; margin {noise['margin']:.4f} "
            f"({measured}) → trial #{record['trial']} ({record['decision']})")
