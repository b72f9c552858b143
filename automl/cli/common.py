"""Arguments and loading shared by the commands."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from automl.config import StudyFile, load_study_file
from automl.terminal import markup_safe

if TYPE_CHECKING:
    import optuna

    from automl.study.runner import Prepared
    from automl.view.progress import LiveView


def add_study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", help="study file (studies/*.yaml)")
    p.add_argument("--storage", help="storage URL (overrides the study file); 'env:VAR' reads it from $VAR")
    p.add_argument("--runs-root", default="runs", help="folder holding runs/<study>/ (default: runs)")


def overrides(args: argparse.Namespace) -> dict:
    """CLI flags that override study-file fields (dotted keys)."""
    pairs = {"data.root": getattr(args, "data", None), "budget.n_trials": getattr(args, "n_trials", None),
             "budget.timeout": getattr(args, "timeout", None), "budget.trial_epochs": getattr(args, "epochs", None),
             "device": getattr(args, "device", None)}
    return {k: v for k, v in pairs.items() if v is not None}


def load_study(args: argparse.Namespace) -> StudyFile:
    return load_study_file(args.study, overrides=overrides(args), runs_root=Path(args.runs_root))


@dataclass
class OpenedStudy:
    sf: StudyFile
    url: str  # unmasked: mask_url() before showing it
    storage: optuna.storages.BaseStorage
    study: optuna.Study


def open_latest_study(args: argparse.Namespace, console: Console, *, stage: str | None = None) -> OpenedStudy | None:
    """The study a morning-view verb reads: the latest stage begun (or ``stage``). When the search
    has not created it yet, says so and how to start it, and returns None (exit code 1)."""
    import optuna

    from automl.errors import AutoMLError
    from automl.study.stages import current_study_name, stage_study_name
    from automl.study.storage import mask_url, open_storage, resolve_url

    sf = load_study(args)
    url = resolve_url(sf, args.storage)
    storage = open_storage(url, sf.storage)
    stages = [st.name for st in sf.stages]
    if stage is not None and stage not in stages:
        raise AutoMLError(f"--stage: {stage!r} is not a stage of {sf.name} (stages: {', '.join(stages) or 'none'})")
    name = stage_study_name(sf, stages.index(stage)) if stage else current_study_name(sf, storage)
    try:
        return OpenedStudy(sf, url, storage, optuna.load_study(study_name=name, storage=storage))
    except KeyError:
        console.print(f"no study named {markup_safe(name)} in {markup_safe(mask_url(url))} yet: run `automl search "
                      f"{markup_safe(args.study)}`", highlight=False)
        return None


def search_view(prep: Prepared, console: Console, **setup_kwargs) -> LiveView:
    """The live console view of a search that is about to start: its first study (the first
    stage's, if staged) is opened and its first trial enqueued (``setup_kwargs``: see
    ``setup_study``)."""
    from automl.study.runner import setup_study
    from automl.view.progress import LiveView

    sf = prep.sf
    first = setup_study(prep, stage_index=0 if sf.stages else None, **setup_kwargs)
    return LiveView(first, sf.stages[0].n_trials if sf.stages else sf.budget.n_trials, console)
