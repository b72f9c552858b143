"""Arguments and loading shared by the commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from automl.config import StudyFile, load_study_file


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
