"""What the search adds for optuna-dashboard: a note on every finished trial, the study note
(search summary) refreshed after each trial, and a predictions PNG on each completed trial.

The search never imports this module: the CLI hands them to it (:func:`morning_view`)::

    view = morning_view(prep)
    run_all(prep, callbacks=[*view.callbacks], completed_hooks=view.completed_hooks)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.config import StudyFile
from automl.trial.objective import CompletedHook
from automl.view.notes import (
    Importances,
    compute_importances,
    study_summary,
    write_study_note,
    write_trial_note,
)
from automl.view.prediction_grid import PredictionGrid

if TYPE_CHECKING:
    from automl.study.runner import Prepared

log = logging.getLogger(__name__)

StudyCallback = Callable[[optuna.Study, FrozenTrial], None]
IMPORTANCE_EVERY = 5  # recompute parameter importances after every N-th complete trial


class NotesCallback:
    """Optuna callback: the finished trial's note, then the study note. Never raises, since an
    exception in a callback would end ``study.optimize``."""

    def __init__(self, sf: StudyFile, importance_every: int = IMPORTANCE_EVERY):
        self.sf, self.every = sf, importance_every
        self.importances: Importances | None = None
        self._complete_seen: int | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        try:
            write_trial_note(study, trial)
            write_study_note(study, study_summary(study, self.sf, self._importances(study)))
        except Exception as exc:  # noqa: BLE001 - e.g. the storage is restarting; the next trial retries
            log.warning("could not write the dashboard notes after trial %d: %s: %s", trial.number,
                        type(exc).__name__, exc)

    def _importances(self, study: optuna.Study) -> Importances | None:
        n = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        stale = self._complete_seen is None or (n != self._complete_seen and n % self.every == 0)
        if stale or (self.importances is None and n != self._complete_seen):
            self.importances, self._complete_seen = compute_importances(study), n
        return self.importances


@dataclass
class MorningView:
    callbacks: list[StudyCallback]  # after every trial that ends (also those recovery ends)
    completed_hooks: list[CompletedHook]  # on a completed trial, while its model is in memory


def morning_view(prep: Prepared) -> MorningView:
    """Optuna callbacks and completed hooks that make the study readable in optuna-dashboard:
    trial and study notes, a predictions PNG per completed trial."""
    return MorningView([NotesCallback(prep.sf)], [PredictionGrid(prep.data, prep.sf.run_dir)])
