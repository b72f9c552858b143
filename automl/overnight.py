"""`automl run --budget T`: one budget for the night — search, retrain the winner, write the bundle.

The split is a stated rule (study file ``run:``): the search gets ``search_fraction`` of the budget;
whatever it leaves (it stops starting trials when its share is spent, and finishes the running one)
goes to the final retrain, less ``final_reserve`` for export, TTA, INT8 and latency. The number of
final epochs follows from that time and the selected trial's measured epoch time, not from the
trial length. Progress is kept in the final study's user_attrs (``run_state``: search → final →
done), so a killed ``automl run`` resumes in the stage it was in.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial

from automl.study.budget import search_seconds
from automl.study.config import StudyFile
from automl.study.runner import Prepared, final_study, run_all
from automl.study.selection import select_trial

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetPlan:
    total_s: float
    search_s: float
    reserve_s: float

    @classmethod
    def split(cls, total_s: float, sf: StudyFile) -> BudgetPlan:
        return cls(total_s, total_s * sf.run.search_fraction, min(sf.run.final_reserve, 0.25 * total_s))


def epoch_seconds(trial: FrozenTrial, sf: StudyFile, n_train: int, n_val: int) -> float:
    """One training epoch of this config as the search measured it (evaluation included)."""
    per_epoch = statistics.median(trial.user_attrs["epoch_times_s"])
    if sf.final.train_on_trainval:
        per_epoch *= (n_train + n_val) / n_train
    return per_epoch


def final_epochs(plan: BudgetPlan, spent_s: float, per_epoch_s: float, minimum: int = 1) -> int:
    left = plan.total_s - spent_s - plan.reserve_s
    return max(minimum, math.floor(left / per_epoch_s))


def _record(study: optuna.Study, **attrs) -> None:
    for k, v in attrs.items():
        study.set_user_attr(f"run_{k}", v)


def run_overnight(prep: Prepared, total_s: float, *, on_study=None, events=None, callbacks=None,
                  final_kwargs: dict | None = None):
    """Search within its share, then retrain the selected trial with what is left; returns the
    final stage's result."""
    from automl.final import run_final

    sf = prep.sf
    plan = BudgetPlan.split(total_s, sf)
    t0 = time.monotonic()
    study = None
    try:
        study = final_study(sf, prep.storage_url)
    except KeyError:
        pass
    state = study.user_attrs.get("run_state") if study is not None else None
    if state == "done":
        log.info("this run is complete; the bundle is in %s (delete run_state to redo the final)",
                 (sf.run_dir / "bundle").name)
        return None
    if state != "final":
        study = run_all(prep, timeout_s=plan.search_s, on_study=on_study, events=events, callbacks=callbacks)
        _record(study, budget_s=total_s, state="final")
    spent = search_seconds(study)
    best = select_trial(study, sf)
    per_epoch = epoch_seconds(best, sf, len(prep.data.train), len(prep.data.val))
    epochs = final_epochs(plan, spent, per_epoch, sf.run.min_final_epochs)
    log.info("search used %.0f s of %.0f s; final retrain of trial %d: %d epochs of ~%.1f s", spent, total_s,
             best.number, epochs, per_epoch)
    _record(study, search_s=round(spent, 1), final_epochs=epochs, epoch_s=round(per_epoch, 2),
            final_trial=best.number)
    t_final = time.monotonic()
    result = run_final(sf, storage=prep.storage_url, epochs=epochs, **(final_kwargs or {}))
    _record(study, final_s=round(time.monotonic() - t_final, 1), state="done",
            session_s=round(time.monotonic() - t0, 1))
    return result
