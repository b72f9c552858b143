"""The final stage's input: the study, the trial to retrain, its config, and the search summary."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.config import StudyFile
from automl.errors import AutoMLError
from automl.study.budget import trial_counts
from automl.study.runner import final_study
from automl.study.selection import selection
from automl.study.storage import mask_url
from automl.trial_config import TrialConfig


def load_existing_study(sf: StudyFile, storage_url: str) -> optuna.Study:
    """The study the final stage retrains from (the last stage's, for a staged search); never
    creates one (an empty study means no search ran)."""
    if storage_url.startswith("sqlite:///") and not Path(storage_url[len("sqlite:///"):]).is_file():
        raise AutoMLError(f"no study database at {storage_url[len('sqlite:///'):]}; run `automl search` first "
                          "(or pass --storage / --runs-root)")
    try:
        return final_study(sf, storage_url)
    except KeyError:
        raise AutoMLError(f"no study for {sf.name!r} in {mask_url(storage_url)}; run `automl search` first") from None


def pick_trial(study: optuna.Study, sf: StudyFile, number: int | None = None) -> FrozenTrial:
    """The trial the search selected (best feasible, or picked from the Pareto front by
    ``pareto_pick``), or trial ``number`` (which must be complete)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise AutoMLError(f"study {study.study_name} has no completed trial yet; run `automl search` first")
    if number is None:
        chosen = selection(study, sf)
        if chosen.record is not None:  # the incumbent rule's decision, with its figures, for status and the report
            study.set_user_attr("selection", chosen.record)
        return chosen.trial
    chosen = next((t for t in complete if t.number == number), None)
    if chosen is None:
        raise AutoMLError(f"trial {number} of study {study.study_name} is not a completed trial; completed: "
                          f"{', '.join(str(t.number) for t in complete[:20])}")
    return chosen


def final_config(trial: FrozenTrial, epochs: int) -> TrialConfig:
    """The trial's resolved config with the final epoch count (seed and everything else kept); the
    LR schedule spans the final epochs, whatever span the search trial used."""
    if "config" not in trial.user_attrs:
        raise AutoMLError(f"trial {trial.number} has no resolved config (user_attrs['config']); "
                          "it was not created by `automl search`")
    return TrialConfig.from_dict(trial.user_attrs["config"]).with_changes(epochs=epochs, schedule_epochs=None)


def search_summary(study: optuna.Study, sf: StudyFile, trial: FrozenTrial) -> dict:
    """Trials by state, the budget, the search's wall time, which trial is retrained (for a
    staged search: the last stage's study), and the incumbent rule's decision (None where it does
    not apply)."""
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    b = sf.budget
    chosen = selection(study, sf)
    return {
        "trials": {k: v for k, v in trial_counts(study).items() if v},
        "trials_total": len(trials),
        "budget": {"n_trials": b.n_trials, "timeout_s": b.timeout, "trial_epochs": b.trial_epochs,
                   "trial_time_limit_s": b.trial_time_limit},
        "wall_s": round((max(ends) - min(starts)).total_seconds(), 1) if starts and ends else None,
        "study": study.study_name,
        "retrained_trial": {"number": trial.number, "value": trial.values[0] if trial.values else None,
                            "selected": trial.number == chosen.trial.number,
                            "params_m": trial.user_attrs.get("params_m")},
        "selection": chosen.record,
    }
