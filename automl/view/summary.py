"""End-of-search summary: the best trial, counts, and how to look further."""

from __future__ import annotations

import shlex
from pathlib import Path

import optuna
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from automl.config import StudyFile
from automl.errors import ConfigError
from automl.study.budget import trial_counts
from automl.study.storage import mask_url, resolve_url, storage_arg
from automl.terminal import markup_safe, visible
from automl.trial_config import TrialConfig


def command_flags(sf: StudyFile, storage_url: str) -> str:
    """The ``--runs-root`` and ``--storage`` a later command needs to find this run: those that
    differ from what the study file alone gives, so the hints shown can be run as they are."""
    flags = []
    if Path(sf.runs_root) != Path("runs"):
        flags.append(f"--runs-root {shlex.quote(str(sf.runs_root))}")
    try:
        default = resolve_url(sf)
    except ConfigError:  # the file's env:VAR is not set here: the URL came from --storage
        default = None
    if storage_url != default:
        flags.append(f"--storage {shlex.quote(storage_arg(storage_url))}")
    return "".join(" " + f for f in flags)


def front_table(study: optuna.Study, sf: StudyFile) -> Table:
    from automl.view.notes import FRONT_COLUMNS, front_rows

    table = Table(title="Pareto front")
    for col in FRONT_COLUMNS:
        table.add_column(col)
    for row in front_rows(study, sf):
        table.add_row(*row)
    return table


def print_summary(study: optuna.Study, sf: StudyFile, storage_url: str, console: Console, study_file: str) -> None:
    from automl.errors import AutoMLError
    from automl.study.selection import describe, selection
    from automl.view.notes import config_rows

    counts = trial_counts(study)
    console.print(f"\nstudy [bold]{study.study_name}[/]: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    try:
        chosen = selection(study, sf)
    except AutoMLError as exc:
        console.print(visible(exc), markup=False, highlight=False)
        return
    best = chosen.trial
    if sf.multi_objective:
        console.print(front_table(study, sf))
    cfg = TrialConfig.from_dict(best.user_attrs["config"])
    how = f"picked from the front ({sf.pareto_pick.rule})" if sf.multi_objective else "best trial"
    table = Table(title=f"{how} #{best.number}: val mIoU {best.values[0]:.4f}", show_header=False)
    for setting, value in config_rows(cfg):
        table.add_row(setting, escape(value))  # e.g. encoder weights: a path the user wrote
    table.add_row("size", f"{best.user_attrs.get('params_m', float('nan')):.2f} M params, "
                          f"{best.user_attrs.get('latency_ms', float('nan')):.1f} ms/image "
                          f"({best.user_attrs.get('latency_device', '?')})")
    per_class = best.user_attrs.get("miou_per_class", {})
    table.add_row("per class", "  ".join(f"{k} {v:.2f}" if v is not None else f"{k} -" for k, v in per_class.items()))
    console.print(table)
    if chosen.record is not None:
        console.print(f"selection (incumbent rule): {describe(chosen.record)}", markup=False, highlight=False,
                      soft_wrap=True)
    from automl.study.checkpoints import missing_best_weights

    flags = command_flags(sf, storage_url)
    command = f"{shlex.quote(str(study_file))}{flags}"
    missing = missing_best_weights(sf, study._storage, f"automl rerun {command}")
    if missing is not None:  # never let the folder's older weights pass for the best trial's
        console.print(Text("warning: ", style="yellow") + Text(visible(missing.message)), soft_wrap=True)
    shown = markup_safe(mask_url(storage_url))
    console.print(f"open the dashboard:   automl dashboard {markup_safe(command)}   (or: optuna-dashboard {shown})",
                  highlight=False, soft_wrap=True)
    # `optuna best-trial` fails on a study with several objectives; best-trials lists the front
    verb = "best-trials" if sf.multi_objective else "best-trial"
    console.print(f"best {'trials' if sf.multi_objective else 'trial'} as JSON:   optuna {verb} --storage {shown} "
                  f"--study-name {study.study_name} -f json", highlight=False, soft_wrap=True)
