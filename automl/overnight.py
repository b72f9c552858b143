"""`automl run --budget T`: one budget for the night — search, retrain the winner, write the bundle.

The split is a stated rule (study file ``run:``): the search gets at most ``search_fraction`` of
the budget, and only starts a trial it can finish within its share (less, so that the final
retrain of the current best keeps ``min_final_epochs``); whatever it leaves goes to the final
retrain, less ``final_reserve`` for export, TTA, INT8 and latency. The number of final epochs
follows from that time and the selected trial's measured training time per epoch (plus
``epoch_margin``), not from the trial length. Progress is kept in the final study's user_attrs
(``run_state``: search → final → done), so a killed ``automl run`` resumes in the stage it was in.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.config import StudyFile
from automl.errors import AutoMLError
from automl.study.budget import search_seconds
from automl.study.runner import Prepared, final_study, run_all
from automl.study.selection import select_trial
from automl.study.stages import search_study_names
from automl.study.storage import open_storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetPlan:
    total_s: float
    search_s: float
    reserve_s: float
    epoch_margin: float = 0.0  # a final epoch is priced at (1 + epoch_margin) × its measured time

    @classmethod
    def split(cls, total_s: float, sf: StudyFile) -> BudgetPlan:
        return cls(total_s, total_s * sf.run.search_fraction, min(sf.run.final_reserve, 0.25 * total_s),
                   sf.run.epoch_margin)

    def shortfall(self, sf: StudyFile) -> str | None:
        """Why this budget will likely be overrun, or None. Export, INT8 and the variants'
        evaluation take about ``run.final_reserve`` whatever the budget (a 2-minute GPU run with
        full-size CamVid images overran it more than twice); a budget that caps the reserve at a
        quarter of itself leaves them too little."""
        if self.reserve_s >= sf.run.final_reserve:
            return None
        return (f"a budget of {self.total_s / 60:.1f} min leaves {self.reserve_s:.0f} s for export, INT8 and "
                f"evaluation after the retrain (run.final_reserve: {sf.run.final_reserve:.0f} s); expect the run "
                f"to end past its budget. A budget of {4 * sf.run.final_reserve / 60:.0f} min or more avoids this.")


def epoch_seconds(trial: FrozenTrial, sf: StudyFile, n_train: int, n_val: int) -> float:
    """One training epoch of this config as the search measured it, evaluation excluded (the final
    retrain scores val only ``final.eval_points`` times; see :func:`eval_seconds`)."""
    attrs = trial.user_attrs
    if attrs.get("train_s") and attrs.get("epochs_run"):
        per_epoch = attrs["train_s"] / attrs["epochs_run"]
    else:  # a trial recorded without the split: its scored epochs, evaluation included
        per_epoch = statistics.median(attrs["epoch_times_s"])
    if sf.final.train_on_trainval:
        per_epoch *= (n_train + n_val) / n_train
    return per_epoch


def eval_seconds(trial: FrozenTrial, sf: StudyFile) -> float:
    """The final retrain's val passes, each priced at the trial's mean pass (its subset passes and
    its full one: a slight overestimate, as the final's passes are mostly on the subset)."""
    attrs = trial.user_attrs
    passes = len(attrs.get("epoch_times_s", ()))
    return sf.final.eval_points * attrs["eval_s"] / passes if passes and "eval_s" in attrs else 0.0


def final_epochs(plan: BudgetPlan, spent_s: float, per_epoch_s: float, minimum: int = 1,
                 eval_s: float = 0.0) -> int:
    left = plan.total_s - spent_s - plan.reserve_s - eval_s
    return max(minimum, math.floor(left / (per_epoch_s * (1 + plan.epoch_margin))))


def search_time(sf: StudyFile, storage: optuna.storages.BaseStorage) -> float:
    """Search seconds over the whole search: every stage's study for a staged one."""
    total = 0.0
    for name in search_study_names(sf):
        try:
            total += search_seconds(optuna.load_study(study_name=name, storage=storage))
        except KeyError:  # a later stage not started yet
            pass
    return total


class SearchGate:
    """Within `automl run`, whether the search may start another trial.

    It may not when the trial, at the median length of the completed ones, would still run at the
    search's deadline: its share of the budget (``run.search_fraction``), or earlier if the final
    retrain of the current best would otherwise get fewer than ``run.min_final_epochs`` epochs.
    Without this, a trial started just before the share ran out ate into the final's time.
    """

    def __init__(self, prep: Prepared, plan: BudgetPlan, storage: optuna.storages.BaseStorage):
        self.prep, self.plan, self.storage = prep, plan, storage

    def deadline(self, study: optuna.Study) -> float:
        sf, plan = self.prep.sf, self.plan
        try:
            best = select_trial(study, sf)
        except AutoMLError:  # nothing completed yet
            return plan.search_s
        per_epoch = epoch_seconds(best, sf, len(self.prep.data.train), len(self.prep.data.val))
        need = sf.run.min_final_epochs * per_epoch * (1 + plan.epoch_margin) + eval_seconds(best, sf)
        return min(plan.search_s, plan.total_s - plan.reserve_s - need)

    def __call__(self, study: optuna.Study) -> str | None:
        """Why the search stops here, or None to start the next trial."""
        elapsed = search_time(self.prep.sf, self.storage)
        lengths = [t.user_attrs["wall_s"] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if "wall_s" in t.user_attrs]
        typical = statistics.median(lengths) if lengths else 0.0
        deadline = self.deadline(study)
        if elapsed + typical <= deadline:
            return None
        return (f"search stopped after {elapsed / 60:.1f} min: a trial takes ~{typical / 60:.1f} min and the search "
                f"must end by {deadline / 60:.1f} min (run.search_fraction, run.min_final_epochs)")


def _record(study: optuna.Study, **attrs) -> None:
    for k, v in attrs.items():
        study.set_user_attr(f"run_{k}", v)


def run_overnight(prep: Prepared, total_s: float, *, on_study=None, events=None, callbacks=None, completed_hooks=None,
                  final_kwargs: dict | None = None, search: Callable[[], optuna.Study] | None = None):
    """Search within its share, then retrain the selected trial with what is left; returns the
    final stage's result. ``search`` replaces the in-process search (``automl run --workers``:
    worker processes, each with the same :class:`SearchGate`, started with ``--run-budget``); it
    returns when they have all stopped."""
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
    if (short := plan.shortfall(sf)) is not None:
        log.warning(short)
    storage = open_storage(prep.storage_url, sf.storage)
    if state != "final":
        if search is not None:
            study = search()
        else:
            study = run_all(prep, timeout_s=plan.search_s, on_study=on_study, events=events, callbacks=callbacks,
                            completed_hooks=completed_hooks,
                            stop_when=SearchGate(prep, plan, storage))
    spent = search_time(sf, storage)
    if state != "final":  # the state goes last: a run killed here resumes in the final with all it needs
        _record(study, budget_s=total_s, search_s=round(spent, 1), state="final")
    best = select_trial(study, sf)
    per_epoch = epoch_seconds(best, sf, len(prep.data.train), len(prep.data.val))
    epochs = final_epochs(plan, spent, per_epoch, sf.run.min_final_epochs, eval_seconds(best, sf))
    log.info("search used %.0f s of %.0f s; final retrain of trial %d: %d epochs of ~%.1f s", spent, total_s,
             best.number, epochs, per_epoch)
    _record(study, final_epochs=epochs, epoch_s=round(per_epoch, 2),
            final_trial=best.number)
    t_final = time.monotonic()
    # resumed in the final: a retrain that finished before the kill is reused (same config, epochs, split)
    result = run_final(sf, storage=prep.storage_url, epochs=epochs, data=prep.data,
                       **{"reuse_model": state == "final", **(final_kwargs or {})})
    _record(study, final_s=round(time.monotonic() - t_final, 1), state="done",
            session_s=round(time.monotonic() - t0, 1))
    return result
