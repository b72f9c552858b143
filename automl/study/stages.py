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

from automl.errors import ConfigError
from automl.study.config import StageSection, StudyFile


def stage_study_name(sf: StudyFile, index: int | None) -> str:
    return sf.name if index is None else f"{sf.name}.{sf.stages[index].name}"


def search_study_names(sf: StudyFile) -> list[str]:
    """The Optuna studies of the whole search: one per stage, or the study itself."""
    return [stage_study_name(sf, i) for i in range(len(sf.stages))] if sf.stages else [sf.name]


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
