"""End-of-search summary: the best trial, counts, and how to look further."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from automl.study.config import StudyFile
from automl.study.storage import mask_url
from automl.trial_config import TrialConfig


def trial_counts(study: optuna.Study) -> dict[str, int]:
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    return counts


def front_table(study: optuna.Study, sf: StudyFile) -> Table:
    from automl.study.notes import FRONT_COLUMNS, front_rows

    table = Table(title="Pareto front")
    for col in FRONT_COLUMNS:
        table.add_column(col)
    for row in front_rows(study, sf):
        table.add_row(*row)
    return table


def print_summary(study: optuna.Study, sf: StudyFile, storage_url: str, console: Console, study_file: str) -> None:
    from automl.errors import AutoMLError
    from automl.study.notes import config_rows
    from automl.study.selection import select_trial

    counts = trial_counts(study)
    console.print(f"\nstudy [bold]{study.study_name}[/]: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    try:
        best = select_trial(study, sf)
    except AutoMLError as exc:
        console.print(str(exc))
        return
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
    shown = mask_url(storage_url)
    console.print(f"open the dashboard:   automl dashboard {study_file}   (or: optuna-dashboard {shown})")
    console.print(f"best trial as JSON:   optuna best-trial --storage {shown} --study-name {study.study_name} -f json",
                  soft_wrap=True)
