"""End-of-search summary: the best trial, counts, and how to look further."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
from rich.console import Console
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
    table.add_row("model", f"{cfg.model.arch} / {cfg.model.encoder} (depth {cfg.model.encoder_depth}, "
                           f"aux head {'on' if cfg.model.aux_head else 'off'})")
    table.add_row("optimizer", f"{cfg.optimizer.name} lr {cfg.optimizer.lr:.3g} wd {cfg.optimizer.weight_decay:.2g}")
    table.add_row("schedule", f"{cfg.schedule.name} warmup {cfg.schedule.warmup_frac:.2f}, batch {cfg.batch_size}, "
                              f"{cfg.epochs} epochs")
    lo = cfg.loss
    table.add_row("loss", f"ce {lo.ce:.2f} dice {lo.dice:.2f} focal {lo.focal:.2f} lovasz {lo.lovasz:.2f} aux {lo.aux:.2f}")
    a = cfg.augment
    table.add_row("augment", f"crop {a.crop_height}x{a.crop_width} scale {a.scale_min:.2f}-{a.scale_max:.2f} "
                             f"hflip {a.hflip:.2f} jitter {a.color_jitter:.2f} blur/noise {a.blur_noise:.2f} "
                             f"target crop {a.target_crop:.2f}")
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
