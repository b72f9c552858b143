"""``automl report``: the study summary as Markdown plus PNG plots, under ``runs/<study>/report/``,
for those who would rather read a file than open a server.

Plots: optimization history, intermediate (per-epoch) val mIoU curves, parameter importances
(Optuna's matplotlib visualizations) and val mIoU against latency (matplotlib directly).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from automl.config import StudyFile
from automl.plotting import pyplot
from automl.study.artifacts import artifact_dir
from automl.study.budget import miou_of
from automl.study.selection import selected_or_none
from automl.view.notes import (
    MIN_IMPORTANCE_SHOWN,
    MIN_TRIALS_FOR_IMPORTANCE,
    Importances,
    compute_importances,
    study_summary,
)

HISTORY, INTERMEDIATE, IMPORTANCES, LATENCY = ("history.png", "intermediate.png", "importances.png",
                                               "miou_vs_latency.png")


@dataclass
class ReportFiles:
    markdown: Path
    plots: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # plot file → why it was not drawn


def _metric(study: optuna.Study) -> str:
    return (study.metric_names or ["val mIoU"])[0]


def _save(ax, path: Path, title: str, *, integer_x: bool = False) -> Path:
    from matplotlib.ticker import MaxNLocator

    fig = ax.figure
    if integer_x:  # trial numbers, epochs
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_title(title)
    fig.set_size_inches(8, 5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot().close(fig)
    return path


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def plot_history(study: optuna.Study, path: Path) -> Path:
    from optuna.visualization.matplotlib import plot_optimization_history

    if not _complete(study):
        raise ValueError("no complete trial yet")
    # a Pareto study has several objectives: Optuna draws one when told which (mIoU)
    target = {"target": miou_of} if len(study.directions) > 1 else {}
    ax = plot_optimization_history(study, target_name=_metric(study), **target)
    return _save(ax, path, f"{study.study_name}: {_metric(study)} by trial (complete trials)", integer_x=True)


def plot_intermediate(study: optuna.Study, path: Path) -> Path:
    from optuna.visualization.matplotlib import plot_intermediate_values

    if not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        raise ValueError("no trial has reported an epoch yet")
    ax = plot_intermediate_values(study)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{_metric(study)} (subset before the last epoch)")
    if ax.get_legend() is not None and len(ax.get_lines()) > 12:
        ax.get_legend().remove()  # one entry per trial stops being readable
    return _save(ax, path, f"{study.study_name}: {_metric(study)} per epoch, all trials (pruned ones stop early)",
                 integer_x=True)


def plot_importances(study: optuna.Study, path: Path, imp: Importances | None) -> Path:
    if imp is None:
        raise ValueError(f"needs at least {MIN_TRIALS_FOR_IMPORTANCE} complete trials with varying parameters")
    plt = pyplot()
    shown = {n: v for n, v in imp.values.items() if v >= MIN_IMPORTANCE_SHOWN}
    names = list(shown)[::-1]
    fig, ax = plt.subplots()
    ax.barh(names, [shown[n] for n in names], color="tab:blue")
    for y, n in enumerate(names):
        ax.text(shown[n], y, f" {shown[n]:.3f}", va="center", fontsize=8)
    rest = len(imp.values) - len(shown)
    ax.set_xlabel(f"importance for {_metric(study)} (PED-ANOVA)"
                  + (f"; {rest} more below {MIN_IMPORTANCE_SHOWN} not shown" if rest else ""))
    ax.set_xlim(0, max(shown.values(), default=0) * 1.2 or 1)
    return _save(ax, path, f"{study.study_name}: parameter importances over {imp.n_trials} complete trials")


def plot_miou_vs_latency(study: optuna.Study, sf: StudyFile, path: Path) -> Path:
    plt = pyplot()
    trials = [t for t in _complete(study) if "latency_ms" in t.user_attrs and t.values]
    if not trials:
        raise ValueError("no complete trial with a latency")
    best = selected_or_none(study, sf)
    fig, ax = plt.subplots()
    by_arch: dict[str, list] = {}
    for t in trials:
        arch = t.user_attrs.get("config", {}).get("model", {}).get("arch", "?")
        by_arch.setdefault(arch, []).append(t)
    for arch, ts in sorted(by_arch.items()):
        ax.scatter([t.user_attrs["latency_ms"] for t in ts], [miou_of(t) for t in ts], label=arch, s=36)
    for t in trials:
        enc = t.user_attrs.get("config", {}).get("model", {}).get("encoder", "")
        ax.annotate(f"#{t.number} {enc}", (t.user_attrs["latency_ms"], miou_of(t)), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    if best is not None and "latency_ms" in best.user_attrs:
        ax.scatter([best.user_attrs["latency_ms"]], [miou_of(best)], marker="*", s=220, facecolors="none",
                   edgecolors="black", label=f"selected #{best.number}")
    devices = sorted({str(t.user_attrs.get("latency_device", "?")) for t in trials})
    ax.set_xlabel(f"latency ms/image (batch 1, {', '.join(devices)}, measured before training)")
    ax.set_ylabel(_metric(study))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(ax, path, f"{study.study_name}: {_metric(study)} vs latency (complete trials)")


def write_report(study: optuna.Study, sf: StudyFile, out_dir: Path) -> ReportFiles:
    out_dir.mkdir(parents=True, exist_ok=True)
    imp = compute_importances(study)
    plots: list[tuple[str, str, Callable[[Path], Path]]] = [
        (HISTORY, "Optimization history", lambda p: plot_history(study, p)),
        (INTERMEDIATE, "val mIoU per epoch", lambda p: plot_intermediate(study, p)),
        (IMPORTANCES, "Parameter importances", lambda p: plot_importances(study, p, imp)),
        (LATENCY, "val mIoU vs latency", lambda p: plot_miou_vs_latency(study, sf, p)),
    ]
    files = ReportFiles(out_dir / "report.md")
    sections = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, caption, draw in plots:
            path = out_dir / name
            path.unlink(missing_ok=True)  # never leave a stale plot from an earlier report
            try:
                files.plots.append(draw(path))
                sections.append(f"## {caption}\n\n![{caption}]({name})\n")
            except (ValueError, RuntimeError) as exc:
                files.skipped[name] = str(exc)
                sections.append(f"## {caption}\n\nNot drawn: {exc}.\n")
    body = study_summary(study, sf, imp, artifact_base=os.path.relpath(artifact_dir(sf.run_dir), out_dir))
    files.markdown.write_text(body + "\n# Plots\n\n" + "\n".join(sections), encoding="utf-8")
    return files

