"""Staged search: settle data and augmentation first, then spend the rest on the model.

Each stage is its own Optuna study (``<name>.<stage>``) in the same storage, with its own budget.
A stage searches the parameters its ``search`` patterns match; every other parameter is fixed
(``PartialFixedSampler``) to the previous stage's winner, or for the first stage to the search
space's baseline. Each stage's first trial is that starting point, enqueued. A parameter fixed
by neither is searched as usual. Resuming continues the first stage that is not complete.
"""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Any

import optuna

from automl.config import StageSection, StudyFile
from automl.errors import ConfigError


def stage_study_name(sf: StudyFile, index: int | None) -> str:
    return sf.name if index is None else f"{sf.name}.{sf.stages[index].name}"


def search_study_names(sf: StudyFile) -> list[str]:
    """The Optuna studies of the whole search: one per stage, or the study itself."""
    return [stage_study_name(sf, i) for i in range(len(sf.stages))] if sf.stages else [sf.name]


def study_budgets(sf: StudyFile, timeout_s: float | None = None) -> list[tuple[str, int, float | None]]:
    """(study name, finished-trial target, time limit) of each study of the search: a stage's own
    ``n_trials``, and its ``timeout`` or its share (by ``n_trials``) of the search's time,
    whichever is smaller. The search's time is ``timeout_s``, by default ``budget.timeout``."""
    search_s = timeout_s if timeout_s is not None else sf.budget.timeout
    if not sf.stages:
        return [(sf.name, sf.budget.n_trials, search_s)]
    total = sum(st.n_trials for st in sf.stages)
    out = []
    for i, st in enumerate(sf.stages):
        limits = [t for t in (st.timeout, search_s and search_s * st.n_trials / total) if t]
        out.append((stage_study_name(sf, i), st.n_trials, min(limits) if limits else None))
    return out


def current_study_name(sf: StudyFile, storage: optuna.storages.BaseStorage) -> str:
    """The study a user looks at (dashboard, report, rerun, where audit and inspect attach): the
    study itself; for a staged search the latest stage that has begun, which is the one the final
    stage reports into once the search reached it, else the first stage."""
    if not sf.stages:
        return sf.name
    names = search_study_names(sf)
    existing = set(optuna.get_all_study_names(storage))
    return next((n for n in reversed(names) if n in existing), names[0])


def searched(param: str, stage: StageSection) -> bool:
    return any(fnmatch(param, pattern) for pattern in stage.search)


def check_patterns(sf: StudyFile, parameters: list[str]) -> None:
    problems = [f"stages.{st.name}.search: {pattern!r} matches no parameter"
                for st in sf.stages for pattern in st.search if not any(fnmatch(p, pattern) for p in parameters)]
    if problems:
        raise ConfigError("\n".join(problems) + f"\nparameters: {', '.join(parameters)}")


def stage_start(stage: StageSection, start_params: dict[str, Any]) -> dict[str, Any]:
    """Parameters this stage keeps fixed, given the point it starts from."""
    return {k: v for k, v in start_params.items() if not searched(k, stage)}
