"""Where a study stands: trials by state, best so far, time spent, an estimate of time left."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState

from automl.config import StudyFile
from automl.study.budget import BudgetState, budget_state, miou_of


@dataclass
class StudyStatus:
    name: str
    budget: BudgetState
    counts: dict[str, int]
    best_number: int | None
    best_value: float | None
    best_summary: str
    median_trial_s: float | None
    active_workers: int
    eta_s: float | None
    recent_failures: list[tuple[int, str]] = field(default_factory=list)
    retries: list[tuple[int, int]] = field(default_factory=list)  # (retry, original)
    run: dict = field(default_factory=dict)  # `automl run` bookkeeping: where the budget went
    data: list[tuple[str, str]] = field(default_factory=list)  # (label, text): the split, the holdout score


def study_status(study: optuna.Study, sf: StudyFile, target: int, timeout_s: float | None) -> StudyStatus:
    from automl.study.selection import selected_or_none
    from automl.trial_config import TrialConfig

    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in trials:
        counts[t.state.name.lower()] += 1
    b = budget_state(study, target, timeout_s)
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                 if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_start and t.datetime_complete]
    median = statistics.median(durations) if durations else None
    workers = {t.user_attrs.get("worker") for t in trials if t.state == TrialState.RUNNING}
    active = max(1, len(workers))
    eta = None
    if median is not None:
        eta = max(0, b.target - b.finished) * median / active
        if timeout_s is not None:
            eta = min(eta, max(0.0, timeout_s - b.elapsed_s))
    best_number = best_value = None
    summary = ""
    # the trial the final stage would take: best feasible, or pareto_pick's choice from the front
    best = selected_or_none(study, sf)
    if best is not None:
        best_number, best_value = best.number, miou_of(best)
        if "config" in best.user_attrs:
            summary = TrialConfig.from_dict(best.user_attrs["config"]).summary()
    failures = [(t.number, t.user_attrs.get("stop_reason", "failed")) for t in trials if t.state == TrialState.FAIL]
    retries = [(t.number, t.system_attrs["failed_trial"]) for t in trials if "failed_trial" in t.system_attrs]
    run = {k[4:]: v for k, v in study.user_attrs.items() if k.startswith("run_")}
    return StudyStatus(study.study_name, b, counts, best_number, best_value, summary, median, len(workers),
                       eta, failures[-5:], retries, run, data_lines(study.user_attrs) + time_lines(study.user_attrs)
                       + selection_lines(study, sf))


def selection_lines(study: optuna.Study, sf: StudyFile) -> list[tuple[str, str]]:
    """The seed probe, and the incumbent rule's decision as it stands now (the final records it)."""
    from automl.study.selection import describe, is_probe, selection_or_none

    out = [("seed probe", f"#{t.number}, the baseline's config with another seed: {t.state.name.lower()}"
                          + (f", val mIoU {t.values[0]:.4f}" if t.values else ""))
           for t in study.get_trials(deepcopy=False) if is_probe(t)][-1:]
    chosen = selection_or_none(study, sf)
    if chosen is not None and chosen.record is not None:
        out.append(("selection", describe(chosen.record)))
    return out


def data_lines(attrs: dict) -> list[tuple[str, str]]:
    """What the study selected on, and the shipped model's one score on the untouched holdout."""
    from automl.bundle.variants import VARIANTS

    out = []
    split = attrs.get("data_split")
    if split:
        out.append(("data split", f"{split['train_images']} train, {split['selection_images']} selection: "
                                  f"{split['selection']}"))
    cache = attrs.get("data_cache")
    if cache:
        how = "reused" if not cache["built"] else "built" if not cache["reused"] else \
            f"{cache['reused']} reused, {cache['built']} decoded"
        out.append(("data cache", f"{cache['path']}: {cache['records']} pairs, {cache['gb']:.2f} GB, {how} "
                                  "(the last session's start)"))
    final = attrs.get("final") or {}
    if "holdout" in final:
        default = next((v for v in VARIANTS if v.label == final.get("default")), None)
        score = None if default is None else final.get(f"holdout_miou_{default.key}")
        shown = "-" if score is None else f"{score:.4f}"
        out.append(("untouched holdout", f"{final['holdout']} ({final['holdout_images']} images): mIoU {shown} "
                                         f"({final.get('default')}, the bundle's default); scored once, after "
                                         "every decision"))
    return out


def time_lines(attrs: dict) -> list[tuple[str, str]]:
    """How trials were compared, and how `automl run` spent its budget on the final."""
    out = []
    if attrs.get("ref_epoch_s"):
        out.append(("trials compared at", f"equal training time: trial_epochs x {attrs['ref_epoch_s']:.2f} s (the "
                                          "baseline's epoch)"))
    if attrs.get("run_search_skipped"):
        out.append(("search", attrs["run_search_skipped"]))
    expected = attrs.get("run_expected_epochs") or {}
    if expected:
        out.append(("expected final epochs", ", ".join(
            f"{who} #{e['trial']} ~{e['epochs']:.0f} ({e['epoch_s']:.2f} s/epoch)" for who, e in expected.items())))
    if "run_final_epochs_planned" in attrs:
        text = f"{attrs['run_final_epochs_planned']} planned"
        if "run_final_epochs" in attrs:
            text += f", {attrs['run_final_epochs']} trained (re-planned from its own epochs)"
        if attrs.get("run_used_frac") is not None:
            text += f"; the run used {attrs['run_used_frac']:.0%} of its budget"
        out.append(("final epochs", text))
    left_out = (attrs.get("run_extras") or {}).get("left_out") or {}
    if left_out:
        out.append(("left out after the retrain", "; ".join(left_out.values())))
    if "run_student_plan_s" in attrs:
        text = (f"{attrs['run_student_plan_s']:.0f} s to train them (final.distill.share "
                f"{attrs['run_distill_share']:.2f} of the final's training time)")
        if "run_student_epochs" in attrs:
            text += (f"; distilled, then alone: {attrs['run_student_epochs']} epochs each, "
                     f"{attrs['run_student_s']:.0f} s with the student's bundle")
        if attrs.get("run_distill_error"):
            text += f"; failed, the teacher ships: {attrs['run_distill_error']}"
        out.append(("students", text))
    return out
