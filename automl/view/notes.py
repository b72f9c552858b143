"""Markdown notes for optuna-dashboard: one per trial (its config, size, speed, per-class IoU and
why it stopped) and one per study (the search summary, the audit and the final report).

Everything is rendered from what the trial/study already stores (user_attrs, artifacts); the
renderers are pure functions, so ``automl report`` writes the same summary to a file. Notes hold
no storage URL and no absolute path: artifacts are linked by their dashboard route.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.artifacts import get_all_artifact_meta
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState
from optuna_dashboard import get_note, save_note
from pydantic import BaseModel

from automl.config import StudyFile
from automl.study.budget import budget_state, miou_of
from automl.study.selection import describe, is_probe, pareto_front, selection_or_none
from automl.study.stages import study_budgets
from automl.trial.objective import SURPLUS
from automl.trial_config import TrialConfig

log = logging.getLogger(__name__)

# Everything above this line of the study note is rewritten after each trial; what the user
# writes below it in the dashboard is kept.
USER_MARKER = "*Your notes go below this line; the summary above is rewritten after each trial.*"
MIN_TRIALS_FOR_IMPORTANCE = 3
MIN_IMPORTANCE_SHOWN = 0.005
TOP_TRIALS = 5
MAX_FAILURES = 5
MAX_INCLUDED_REPORT = 6000  # characters of the final report.md inlined in the study note
PREDICTION_GRID_ATTR = "prediction_grid"  # trial user_attr: artifact id of the predictions PNG


# ---------------------------------------------------------------------------------------- trial

def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _g(v: float) -> str:
    return f"{v:.3g}"


# TrialConfig fields a trial note leaves out: the format version, and the study's data (the same
# for every trial).
NOT_IN_NOTE = ("version", "data")
# How a field reads where "<name> <value>" reads badly. Any other field reads as its name
# (underscores as spaces) and its value, so a field added to TrialConfig shows without an entry.
_READS: dict[str, Callable[[Any], str]] = {
    "encoder_depth": lambda v: f"depth {v}",
    "encoder_weights": lambda v: f"encoder weights {v or 'random init'}",
    "lr": lambda v: f"lr {v:.2e}",
    "weight_decay": lambda v: f"weight decay {v:.1e}",
    "warmup_frac": lambda v: f"warmup {v:.0%}",
    "color_jitter": lambda v: f"colour jitter {_g(v)}",
    "blur_noise": lambda v: f"blur/noise {_g(v)}",
    "batch_size": lambda v: f"batch {v}",
    "epochs": lambda v: _n(v, "epoch"),
    "schedule_epochs": lambda v: f"LR schedule over {_n(v, 'epoch')}" if v else "",
}
# Branch fields only one branch uses (automl.trial.optim): shown for that branch only.
_USED_ONLY_BY = {"momentum": "sgd", "nesterov": "sgd", "power": "poly"}


def _read(name: str, value: Any) -> str:
    if name in _READS:
        return _READS[name](value)
    if isinstance(value, bool):
        value = "on" if value else "off"
    return f"{name.replace('_', ' ')} {_g(value) if isinstance(value, float) else value}"


def _fields(spec: BaseModel, *skip: str) -> str:
    """Each field of ``spec`` but ``skip`` and sub-models, as "<name> <value>", in declaration order."""
    branch = getattr(spec, "name", None)
    parts = (_read(k, v) for k, v in spec if k not in skip and not isinstance(v, BaseModel)
             and _USED_ONLY_BY.get(k, branch) == branch)
    return ", ".join(p for p in parts if p)


def config_rows(cfg: TrialConfig) -> list[tuple[str, str]]:
    """The resolved config as (setting, value) rows a person reads at a glance: every field of
    TrialConfig but NOT_IN_NOTE, read off its pydantic fields."""
    m, o, s, a = cfg.model, cfg.optimizer, cfg.schedule, cfg.augment
    return [
        ("architecture", f"{m.arch} / {m.encoder} ({_fields(m, 'arch', 'encoder')})"),
        ("optimizer", f"{o.name}, {_fields(o, 'name')}"),
        ("schedule", f"{s.name}, {_fields(s, 'name')}"),
        ("augmentation", f"crop {a.crop_height}x{a.crop_width}, {_fields(a, 'crop_height', 'crop_width')}"),
        ("loss weights", ", ".join(f"{n} {w:.2f}" for n, w in cfg.loss if w > 0)),
        ("training", _fields(cfg, *NOT_IN_NOTE)),
    ]


def stop_text(t: FrozenTrial) -> str:
    """Why the trial stopped, in words: completed, pruned at epoch k, failed: reason."""
    reason = t.user_attrs.get("stop_reason")
    epochs = t.user_attrs.get("epochs_run")
    if t.state == TrialState.COMPLETE:
        return f"completed ({_n(epochs, 'epoch')})" if epochs is not None else "completed"
    if t.state == TrialState.PRUNED:
        if reason:
            return reason
        return f"pruned at epoch {max(t.intermediate_values)}" if t.intermediate_values else "pruned"
    if t.state == TrialState.FAIL:
        if not reason and t.system_attrs.get("fail_reason"):  # Optuna's own record of the exception
            return f"failed: {str(t.system_attrs['fail_reason']).splitlines()[0][:300]}"
        return reason or "failed: no reason recorded (the worker died or lost the storage; it is retried if " \
                         "retries remain)"
    return t.state.name.lower()


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def _iou(v: float | None) -> str:
    return "- (absent from val)" if v is None else f"{v:.3f}"


def trial_note(t: FrozenTrial, *, study_id: int) -> str:
    ua = t.user_attrs
    head = f"## Trial {t.number}: {t.state.name.lower()}"
    if t.state == TrialState.COMPLETE and t.values:
        head += f", val mIoU {miou_of(t):.4f}"
    lines = [head, "", f"**Why it stopped:** {stop_text(t)}", ""]
    if ua.get("baseline"):
        lines += ["Baseline: the search space's default config, run first.", ""]
    if is_probe(t):
        lines += ["Seed probe: the baseline's config again, with another seed. It measures the noise between "
                  "seeds for the incumbent rule; it is never pruned and never selected.", ""]
    if ua.get("retry_of") is not None:
        lines += [f"Retry of trial #{ua['retry_of']} (same seed).", ""]
    rows: list[tuple[str, str]] = []
    if "config" in ua:
        rows += config_rows(TrialConfig.from_dict(ua["config"]))
    if "params_m" in ua:
        rows.append(("parameters", f"{ua['params_m']:.2f} M"))
    if "latency_ms" in ua:
        size = "x".join(str(v) for v in ua.get("input_size", [])) or "?"
        rows.append(("latency", f"{ua['latency_ms']:.1f} ms/image (batch 1, {ua.get('latency_device', '?')}, "
                                f"input {size})"))
    if "wall_s" in ua:
        per_epoch = ", ".join(f"{s:.1f}" for s in ua.get("epoch_times_s", []))
        rows.append(("time", f"{ua['wall_s']:.1f} s wall, {ua.get('compute_s', 0):.1f} s compute; "
                             f"epochs {per_epoch or '-'} s"))
    if "artifact_s" in ua:
        rows.append(("prediction grid", f"{ua['artifact_s'] * 1000:.0f} ms to draw and upload"))
    if "worker" in ua:
        rows.append(("worker", str(ua["worker"])))
    if rows:
        lines += _table(("setting", "value"), rows) + [""]
    per_class = ua.get("miou_per_class")
    if per_class:
        where = "all of val" if t.state == TrialState.COMPLETE else "the fixed val subset"
        lines += [f"### Per-class IoU (epoch {ua.get('epochs_run', '?')}, {where})", ""]
        lines += _table(("class", "IoU"), [(c, _iou(v)) for c, v in per_class.items()]) + [""]
    history = ua.get("miou_history") or []
    if history:
        lines += ["### val mIoU by epoch", ""]
        lines += _table(("epoch", *(str(i) for i in range(1, len(history) + 1))),
                        [("val mIoU", *(f"{v:.4f}" for v in history))])
        lines += ["", "Epochs before the last are measured on a fixed val subset; the last on all of val.", ""]
    grid = ua.get(PREDICTION_GRID_ATTR)
    if grid:
        lines += ["### Predictions on fixed val images", "",
                  f"![image | ground truth | prediction](/artifacts/{study_id}/{t._trial_id}/{grid})", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- study

@dataclass
class Importances:
    values: dict[str, float]
    n_trials: int  # complete trials they were computed from


def compute_importances(study: optuna.Study) -> Importances | None:
    """PED-ANOVA importances (Optuna's default, and what the dashboard shows) over the complete
    trials; None when there are too few to mean anything."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return None
    try:
        # PED-ANOVA ranks parameters by how they reach *low* target values whenever a target is
        # given, so the mIoU goes in negated; its warnings say exactly that, and that small
        # regimes are noisy, which the note states by giving the trial count.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            values = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), target=lambda t: -miou_of(t))
    except (ValueError, RuntimeError) as exc:  # e.g. no parameter varies across the complete trials
        log.debug("no parameter importances: %s", exc)
        return None
    return Importances(dict(values), len(complete))


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


def _model_of(t: FrozenTrial) -> str:
    if "config" not in t.user_attrs:
        return "?"
    m = t.user_attrs["config"]["model"]
    return f"{m['arch']} / {m['encoder']}"


def _best_lines(best: FrozenTrial, sf: StudyFile) -> list[str]:
    ua = best.user_attrs
    how = f"Picked from the Pareto front ({sf.pareto_pick.rule})" if sf.multi_objective else "Best so far"
    lines = [f"## {how}: trial #{best.number}, val mIoU {miou_of(best):.4f}", ""]
    rows = config_rows(TrialConfig.from_dict(ua["config"])) if "config" in ua else []
    if "params_m" in ua and "latency_ms" in ua:
        rows.append(("size", f"{ua['params_m']:.2f} M parameters, {ua['latency_ms']:.1f} ms/image "
                             f"({ua.get('latency_device', '?')})"))
    if ua.get("miou_per_class"):
        rows.append(("per-class IoU", ", ".join(f"{c} {_iou(v) if v is not None else '-'}"
                                                 for c, v in ua["miou_per_class"].items())))
    return lines + (_table(("setting", "value"), rows) + [""] if rows else [])


FRONT_COLUMNS = ("trial", "val mIoU", "latency ms", "params M", "model")


def front_rows(study: optuna.Study, sf: StudyFile) -> list[tuple[str, ...]]:
    """The Pareto front, best mIoU first, as rows of :data:`FRONT_COLUMNS` (note, report, console)."""
    front = sorted(pareto_front(study, sf), key=lambda t: -miou_of(t))
    return [(f"#{t.number}", f"{miou_of(t):.4f}", f"{t.user_attrs.get('latency_ms', float('nan')):.1f}",
             f"{t.user_attrs.get('params_m', float('nan')):.2f}", _model_of(t)) for t in front]


def _front_lines(study: optuna.Study, sf: StudyFile) -> list[str]:
    rows = front_rows(study, sf)
    return [f"## Pareto front ({len(rows)} trials)", ""] + _table(FRONT_COLUMNS, rows) + [""]


def _top_lines(complete: list[FrozenTrial]) -> list[str]:
    top = sorted(complete, key=lambda t: miou_of(t), reverse=True)[:TOP_TRIALS]
    rows = [(f"#{t.number}" + (" (seed probe)" if is_probe(t) else ""), f"{miou_of(t):.4f}", _model_of(t),
             f"{t.user_attrs['params_m']:.2f}" if "params_m" in t.user_attrs else "-",
             f"{t.user_attrs['latency_ms']:.1f}" if "latency_ms" in t.user_attrs else "-",
             f"{t.user_attrs.get('wall_s', 0):.0f}") for t in top]
    return [f"## Top {_n(len(top), 'trial')}" if len(top) > 1 else "## Trials", ""] + _table(
        ("trial", "val mIoU", "model", "params M", "latency ms", "wall s"), rows) + [""]


def _importance_lines(imp: Importances | None, n_complete: int) -> list[str]:
    lines = ["## Parameter importances", ""]
    if imp is None:
        return lines + [f"Not yet: needs at least {MIN_TRIALS_FOR_IMPORTANCE} complete trials with varying "
                        f"parameters ({n_complete} complete so far).", ""]
    shown = {name: v for name, v in imp.values.items() if v >= MIN_IMPORTANCE_SHOWN}
    rows = [(name, f"{v:.3f}", "█" * round(v * 20)) for name, v in shown.items()]
    rest = len(imp.values) - len(shown)
    tail = [f"{_n(rest, 'more parameter')} below {MIN_IMPORTANCE_SHOWN}.", ""] if rest else []
    return lines + [f"PED-ANOVA over {_n(imp.n_trials, 'complete trial')}:", ""] \
        + _table(("parameter", "importance", ""), rows) + [""] + tail


def _outcome_lines(trials: list[FrozenTrial]) -> list[str]:
    lines: list[str] = []
    pruned_at: dict[int, int] = {}
    for t in trials:
        if t.state == TrialState.PRUNED:
            k = t.user_attrs.get("epochs_run", len(t.intermediate_values))
            pruned_at[k] = pruned_at.get(k, 0) + 1
    if pruned_at:
        lines += ["Pruned: " + ", ".join(f"{n} after epoch {k}" for k, n in sorted(pruned_at.items())) + ".", ""]
    failed = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("stop_reason") != SURPLUS]
    if failed:
        lines += [f"## Failures ({len(failed)}; last {min(len(failed), MAX_FAILURES)})", ""]
        lines += [f"- #{t.number}: {stop_text(t)}" for t in failed[-MAX_FAILURES:]] + [""]
    return lines


def _audit_lines(study: optuna.Study, base: str) -> list[str]:
    ua = study.user_attrs
    findings, files = ua.get("audit_findings"), ua.get("audit_artifacts") or {}
    if findings is None and not files:
        return []
    lines = ["## Data audit", ""]
    lines += [f"- {f}" for f in findings or []] or ["No findings."]
    lines.append("")
    for name, aid in files.items():
        link = f"{base}/{aid}"
        lines.append(f"![{name}]({link})" if name.lower().endswith(".png") else f"- [{name}]({link})")
    return lines + [""] if files else lines


def _latest_study_artifact(study: optuna.Study, filename: str) -> str | None:
    metas = [m for m in get_all_artifact_meta(study) if m.filename == filename]
    return metas[-1].artifact_id if metas else None


def _final_lines(study: optuna.Study, run_dir: Path | None, base: str) -> list[str]:
    aid = _latest_study_artifact(study, "report.md")
    final = study.user_attrs.get("final")
    if aid is None and final is None:
        return []
    lines = ["## Final stage", ""]
    if final:
        scores = ", ".join(f"{k.removeprefix('val_miou_')} {v:.4f}" for k, v in final.items()
                           if k.startswith("val_miou_") and isinstance(v, (int, float)))
        lines += [f"Bundle default: **{final.get('default', '?')}**. val mIoU: {scores or '-'}.", ""]
    if aid is not None:
        lines += [f"[report.md]({base}/{aid}) (study artifact)", ""]
        body = _read_artifact(run_dir, aid) if run_dir is not None else None
        for name in ("report.png", "distill.png"):  # the report's own links are relative to the bundle folder
            png = _latest_study_artifact(study, name)
            if body and png is not None:
                body = body.replace(f"]({name})", f"]({base}/{png})")
        if body:
            if len(body) > MAX_INCLUDED_REPORT:
                body = body[:MAX_INCLUDED_REPORT] + "\n\n(truncated: open report.md for the rest)"
            # demote its headings below ours
            lines += ["##" + ln if ln.startswith("#") else ln for ln in body.splitlines()] + [""]
    return lines


def _read_artifact(run_dir: Path, artifact_id: str) -> str | None:
    from automl.study.artifacts import artifact_store

    try:
        with artifact_store(run_dir).open_reader(artifact_id) as f:
            return f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError, ArtifactNotFound):
        return None


def study_summary(study: optuna.Study, sf: StudyFile, importances: Importances | None, *,
                  artifact_base: str | None = None) -> str:
    """The search summary: budget, trials by state, best so far, top trials, importances,
    failures, and the audit and final report once they exist.

    Study artifacts are linked as ``<artifact_base>/<artifact id>``: by default the dashboard's
    route; a file report passes the artifact folder relative to itself.
    """
    base = artifact_base if artifact_base is not None else f"/artifacts/{study._study_id}"
    trials = study.get_trials(deepcopy=False)
    # a stage's own budget, not the whole search's
    _, n_trials, timeout = next((b for b in study_budgets(sf) if b[0] == study.study_name),
                                (study.study_name, sf.budget.n_trials, sf.budget.timeout))
    b = budget_state(study, n_trials, timeout)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    limit = f" of {_hms(timeout)}" if timeout else ""
    lines = [f"# Search summary: {study.study_name}", "",
             f"**Budget:** {_n(n_trials, 'finished trial')}, {_n(sf.budget.trial_epochs, 'epoch')} each.  ",
             f"**Progress:** {b.finished}/{b.target} finished, search time {_hms(b.elapsed_s)}{limit}.  ",
             "**Trials:** " + (", ".join(f"{n} {k}" for k, n in counts.items()) or "none yet") + ".", ""]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    chosen = selection_or_none(study, sf)  # the trial the final stage takes: feasible, incumbent rule, pareto_pick
    if chosen is not None:
        lines += _best_lines(chosen.trial, sf)
        if chosen.record is not None:
            lines += [f"**Selection (incumbent rule):** {describe(chosen.record)}.", ""]
        lines += _front_lines(study, sf) if sf.multi_objective else _top_lines(complete)
    elif complete:
        lines += ["No completed trial meets the constraints yet.", ""]
    else:
        lines += ["No completed trial yet.", ""]
    lines += _outcome_lines(trials)
    lines += _importance_lines(importances, len(complete))
    lines += _audit_lines(study, base)
    lines += _final_lines(study, sf.run_dir, base)
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------- write

@dataclass(frozen=True)
class _TrialRef:
    """What ``optuna_dashboard.save_note`` reads from a trial (storage, study id, trial id), for a
    finished FrozenTrial: building an ``optuna.Trial`` for it would run the sampler's before_trial."""

    storage: optuna.storages.BaseStorage
    study: optuna.Study
    _trial_id: int


def write_trial_note(study: optuna.Study, trial: FrozenTrial) -> None:
    save_note(_TrialRef(study._storage, study, trial._trial_id),  # type: ignore[arg-type]
              trial_note(trial, study_id=study._study_id))


def refresh_study_note(study: optuna.Study, sf: StudyFile) -> None:
    """Rewrite the study note's summary now (importances recomputed); never raises: a stale note
    is no reason to fail the command that asked for it."""
    try:
        write_study_note(study, study_summary(study, sf, compute_importances(study)))
    except Exception as exc:  # noqa: BLE001 - e.g. the storage is restarting; the next trial rewrites it
        log.warning("could not refresh the study note: %s: %s", type(exc).__name__, exc)


def write_study_note(study: optuna.Study, summary: str) -> None:
    """Replace the summary part of the study note, keeping what the user wrote below the marker."""
    old = get_note(study)
    mine = old.split(USER_MARKER, 1)[1] if USER_MARKER in old else "\n"
    body = f"{summary}\n---\n\n{USER_MARKER}{mine}"
    if body != old:
        save_note(study, body)
