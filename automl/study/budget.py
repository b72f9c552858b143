"""Where the study stands against its budget: finished trials and search time, across restarts.

Search time is the union of all trials' running intervals, so it counts every worker and every
session once, and does not count the hours a crashed search sat idle before its restart.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def miou_of(trial: optuna.trial.FrozenTrial) -> float | None:
    """The val mIoU of a finished trial, single- or multi-objective (it is always objective 0)."""
    return trial.values[0] if trial.values else None


def trials_since_best(study: optuna.Study) -> int:
    """Finished trials (completed or pruned), in order of completion, since the best feasible
    completed one; all finished trials when none has completed yet; the seed probe is not
    counted. Single objective only."""
    # the seed probe re-runs the baseline: it measures noise, it is no step of the search
    finished = sorted((t for t in study.get_trials(deepcopy=False)
                       if t.state in FINISHED and not t.user_attrs.get("seed_probe")),
                      key=lambda t: (t.datetime_complete or dt.datetime.max, t.number))
    best_at, best = -1, None
    for i, t in enumerate(finished):
        feasible = all(v <= 0 for v in t.constraints.values())
        if t.state == TrialState.COMPLETE and feasible and (best is None or t.value > best):
            best_at, best = i, t.value
    return len(finished) - 1 - best_at


def search_seconds(study: optuna.Study, now: dt.datetime | None = None) -> float:
    now = now or dt.datetime.now()
    spans = sorted((t.datetime_start, t.datetime_complete or now)
                   for t in study.get_trials(deepcopy=False) if t.datetime_start is not None)
    total, cur_start, cur_end = 0.0, None, None
    for start, end in spans:
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += (cur_end - cur_start).total_seconds()
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += (cur_end - cur_start).total_seconds()
    return total


@dataclass
class BudgetState:
    target: int
    finished: int
    running: int
    waiting: int
    failed: int
    elapsed_s: float
    timeout_s: float | None

    @property
    def out_of_time(self) -> bool:
        return self.timeout_s is not None and self.elapsed_s >= self.timeout_s

    @property
    def complete(self) -> bool:
        return self.finished >= self.target

    @property
    def fully_booked(self) -> bool:
        """Running trials would reach the total if they all finish: start nothing new."""
        return self.finished + self.running >= self.target


def budget_state(study: optuna.Study, target: int, timeout_s: float | None) -> BudgetState:
    counts = {s: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state] += 1
    return BudgetState(target, counts[TrialState.COMPLETE] + counts[TrialState.PRUNED], counts[TrialState.RUNNING],
                       counts[TrialState.WAITING], counts[TrialState.FAIL], search_seconds(study), timeout_s)


def trial_counts(study: optuna.Study) -> dict[str, int]:
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    return counts
