"""`automl run --budget T`: one budget for the night — search, retrain the winner, write the bundle.

The split is a stated rule (study file ``run:``): the search gets at most ``search_fraction`` of
the budget, and only starts a trial it can finish within its share (less, so that the final
retrain of the current best keeps ``min_final_epochs``); whatever it leaves goes to the final
retrain, less a reserve for export, TTA, INT8 and latency.

Pricing keeps fixed costs apart from per-epoch ones, both measured on the selected trial: a final
epoch costs the trial's steady epoch training time (the median past the first epoch; never a
scored epoch's time, which includes its val pass), plus ``epoch_margin`` for the initial plan;
the final's fixed costs are the trial's setup, its first epoch's warm-up and the final's val
passes, each priced at the trial's pass of that kind; the reserve is priced from the trial's full
val pass and latency, within [RESERVE_FLOOR_S, a quarter of the budget] (``run.final_reserve``
fixes it instead); on CUDA from the model's batch-1 forward on the CPU, where the final scores,
quantizes and times every variant. Work after the retrain that the shipped model does not need
(INT8, the holdout's reference scores: :mod:`automl.final.extras`) is priced and done only when
its price is at most ``run.extras_share`` of the budget (:func:`choose_extras`). The final
retrain then re-plans its epoch count from its own
epochs after epoch 2, to end when its time is spent (:class:`automl.trial.length.FinishBy`).

With ``final.distill`` the final's time after the search is shared by a stated rule: two
reserves come off it (the teacher's and the student's own export, INT8 and latency, each priced
as above), the students get ``final.distill.share`` of the rest and the teacher retrains in the
remainder; the students then get whatever the teacher's stage left of the budget (its drift
included), the distilled student re-planning its epochs so that the student alone, trained
after it at the same epochs, ends in time (:mod:`automl.final.distill`). A distillation that
fails leaves the teacher's bundle as it was, and says why on the study.

Under `automl run` trials are compared at equal training time (``budget.equal``, default time
here; :class:`automl.trial.length.EqualTime`). Progress is kept in the final study's user_attrs
(``run_state``: search → final → done), so a killed ``automl run`` resumes in the stage it was in.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from automl import interrupts
from automl.bundle.variants import ORT_FP32, ORT_INT8, TORCH_FP32, Variant
from automl.config import StudyFile
from automl.errors import AutoMLError
from automl.final.extras import ALL, Extras
from automl.final.latency import BUNDLE_WRITE_S, MIN_RUNS
from automl.final.latency import WARMUP_RUNS as LATENCY_WARMUP_RUNS
from automl.final.pipeline import VAL_TTA, holdout_variants
from automl.study.budget import search_seconds
from automl.study.runner import Prepared, final_study, latency_cache, run_all
from automl.study.selection import is_probe, select_trial
from automl.study.stages import search_study_names
from automl.study.storage import open_storage
from automl.trial.engine import Runtime, subset_indices
from automl.trial.latency import measure_model
from automl.trial.length import steady_epoch_s
from automl.trial_config import TrialConfig

log = logging.getLogger(__name__)

RESERVE_FLOOR_S = 20.0
# The share of the budget latency timing may take before it times fewer runs: a 10-minute run on
# 512x512 images spent 2.5 of its minutes timing 6 variants (benchmarks/README.md). A timing is
# worth less than training: below about an hour on CPU the shipped variant gets its fewest runs
# (MIN_RUNS after the warm-up), and the time goes to the retrain; a night's budget times in full.
LATENCY_SHARE = 0.02
# ONNX export, which no trial measures: the dynamo exporter's graph capture, model-size bound
# (benchmarks/README.md, "One budget for the night", gives the measured figure)
EXPORT_S = 20.0
# One image's predict() per variant, in images of the trial's batched val pass of the torch
# model, the unit the reserve is priced in: benchmarks.final_costs, the larger of CamVid-small's
# and 512x512's figures (torch 1.10 / 0.79, ORT fp32 0.80 / 0.72, ORT INT8 0.34 / 0.27)
VARIANT_COST = {TORCH_FP32: 1.1, ORT_FP32: 0.8, ORT_INT8: 0.35}
# An INT8 calibration image, in images of the trial's batched val pass: the calibration graph
# outputs every activation (benchmarks.final_costs measured 1.5 on CamVid-small, 0.6 at 512x512)
CALIBRATION_COST = 2
# MinMax calibrations priced: the plain recipe's. A fallback starts only if it is expected to end
# within INT8_SHARE of the time left (automl.final.pipeline), which latency's share leaves it;
# pricing one for every run cost a 10-minute run 36 s of training for a fallback most runs skip
CALIBRATIONS = 1


def for_run(sf: StudyFile) -> StudyFile:
    """The study file as `automl run` searches it: trials at equal training time unless
    ``budget.equal`` says otherwise (the goal is a model trained for a time, not for epochs), and
    a final retrain on train + the selection split unless ``final.train_on_trainval`` says
    otherwise (once the config is chosen, the selection images are training data the default
    recipe would have used)."""
    updates = {}
    if sf.budget.equal is None:
        updates["budget"] = sf.budget.model_copy(update={"equal": "time"})
    if sf.final.train_on_trainval is None:
        updates["final"] = sf.final.model_copy(update={"train_on_trainval": True})
    return sf.model_copy(update=updates) if updates else sf


@dataclass(frozen=True)
class BudgetPlan:
    total_s: float
    search_s: float
    reserve_s: float | None  # None: priced from the selected trial (reserve_seconds)
    epoch_margin: float = 0.0  # a final epoch is priced at (1 + epoch_margin) × its measured time

    @classmethod
    def split(cls, total_s: float, sf: StudyFile) -> BudgetPlan:
        fixed = sf.run.final_reserve
        return cls(total_s, total_s * sf.run.search_fraction, None if fixed is None else min(fixed, 0.25 * total_s),
                   sf.run.epoch_margin)

    def shortfall(self, sf: StudyFile) -> str | None:
        """Why this budget will likely be overrun, or None. Export, INT8 and the variants'
        evaluation take about ``run.final_reserve`` whatever the budget (a 2-minute GPU run with
        full-size CamVid images overran it more than twice); a budget that caps the reserve at a
        quarter of itself leaves them too little."""
        if self.reserve_s is None or self.reserve_s >= sf.run.final_reserve:
            return None
        return (f"a budget of {self.total_s / 60:.1f} min leaves {self.reserve_s:.0f} s for export, INT8 and "
                f"evaluation after the retrain (run.final_reserve: {sf.run.final_reserve:.0f} s); expect the run "
                f"to end past its budget. A budget of {4 * sf.run.final_reserve / 60:.0f} min or more avoids this.")


def _train_scale(sf: StudyFile, n_train: int, n_val: int) -> float:
    return (n_train + n_val) / n_train if sf.final.trainval else 1.0


def distill_share(sf: StudyFile) -> float:
    """The students' part of the final's time after the reserves (0: no distillation)."""
    return 0.0 if sf.final.distill is None else sf.final.distill.share


def reserves(sf: StudyFile) -> int:
    """How many models get the work after a retrain (export, INT8, latency): one per shipped model."""
    return 1 if sf.final.distill is None else 2


def epoch_seconds(trial: FrozenTrial, sf: StudyFile, n_train: int, n_val: int) -> float:
    """One steady training epoch of this config as the search measured it: the median epoch past
    the warm-up, val passes and fixed costs excluded (see :func:`fixed_seconds`)."""
    attrs = trial.user_attrs
    per_epoch = steady_epoch_s(attrs.get("epoch_train_s") or [])
    if per_epoch is None and attrs.get("train_s") and attrs.get("epochs_run"):
        per_epoch = attrs["train_s"] / attrs["epochs_run"]  # recorded before per-epoch times were
    if per_epoch is None:  # nothing but the trial's wall time: an overestimate, never an underestimate
        per_epoch = attrs.get("wall_s", 0.0) / max(1, attrs.get("epochs_run", 1))
    return per_epoch * _train_scale(sf, n_train, n_val)


def _passes(trial: FrozenTrial) -> tuple[float, float]:
    """(subset, full) seconds of one val pass; a trial recorded before passes were told apart
    prices both at its mean pass."""
    attrs = trial.user_attrs
    full, sub = attrs.get("eval_full_s"), attrs.get("eval_subset_s")
    if full is None:
        passes = len(attrs.get("epoch_times_s", ()))
        full = attrs["eval_s"] / passes if passes and "eval_s" in attrs else 0.0
    return (full if sub is None else sub), full


def eval_seconds(trial: FrozenTrial, sf: StudyFile) -> float:
    """The final retrain's val passes: ``eval_points`` − 1 on the subset and the last on all of val,
    each priced at the trial's pass of that kind."""
    sub, full = _passes(trial)
    return (sf.final.eval_points - 1) * sub + full


def fixed_seconds(trial: FrozenTrial, sf: StudyFile, n_train: int, n_val: int) -> float:
    """What the final retrain costs whatever its length: setup (model, loader), the first epoch's
    warm-up over a steady one, and its val passes."""
    attrs = trial.user_attrs
    warm = 0.0
    if attrs.get("epoch_train_s"):
        warm = max(0.0, attrs["epoch_train_s"][0] - steady_epoch_s(attrs["epoch_train_s"]))
    return attrs.get("setup_s", 0.0) + warm * _train_scale(sf, n_train, n_val) + eval_seconds(trial, sf)


def reserve_seconds(plan: BudgetPlan, trial: FrozenTrial, sf: StudyFile, n_val: int, n_holdout: int = 0,
                    per_image_s: float | None = None, n_train: int | None = None,
                    extras: Extras | None = None) -> float:
    """The time after the retrain, priced from the trial's full val pass and its batch-1 latency
    (each variant at its VARIANT_COST of a val-pass image): scoring the variants on val and the
    holdout, TTA, export, INT8 calibration, bundle writing
    (fixed), and latency timing, the one elastic part (it times fewer runs when time is short,
    down to MIN_RUNS, and times only the shipped variant when short). Latency gets its full runs
    only if they cost at most LATENCY_SHARE of the budget (timing is worth less than training),
    never fewer than the shipped variant's fewest runs; the whole is
    at least RESERVE_FLOOR_S and at most a quarter of the budget unless the fixed work alone
    needs more. ``run.final_reserve`` fixes it instead. ``per_image_s``: one val image's time as
    the retrain measured it (warm), instead of the trial's; ``n_train``: the training images,
    which cap the calibration set; ``extras``: the work after the retrain that is done (default:
    :func:`choose_extras` at this pricing)."""
    if plan.reserve_s is not None:
        return plan.reserve_s
    price = _Pricing(trial, sf, n_val, n_holdout, per_image_s, n_train)
    if extras is None:
        extras = price.choose(plan.total_s)
    fixed, latency_min, latency_full = price.parts(extras)
    latency = min(latency_full, max(latency_min, LATENCY_SHARE * plan.total_s))
    return max(RESERVE_FLOOR_S, min(fixed + latency, max(0.25 * plan.total_s, fixed + latency_min)))


def choose_extras(plan: BudgetPlan, trial: FrozenTrial, sf: StudyFile, n_val: int, n_holdout: int = 0,
                  per_image_s: float | None = None, n_train: int | None = None) -> Extras:
    """Each extra (:class:`automl.final.extras.Extras`, in its order) that costs at most
    ``run.extras_share`` of the budget, priced as what it adds to the fixed work after the retrain
    given the extras before it (INT8 makes the holdout's passes cheaper, so its price is net of
    that). A fixed ``run.final_reserve`` keeps them all: the user chose the time for them."""
    if plan.reserve_s is not None:
        return ALL
    return _Pricing(trial, sf, n_val, n_holdout, per_image_s, n_train).choose(plan.total_s)


class _Pricing:
    """The work after the retrain, in seconds, for a given set of extras."""

    def __init__(self, trial: FrozenTrial, sf: StudyFile, n_val: int, n_holdout: int,
                 per_image_s: float | None, n_train: int | None):
        self.sf, self.n_val, self.n_holdout, self.n_train = sf, n_val, n_holdout, n_train
        _, full = _passes(trial)
        # The untrained model's batch-1 latency when no pass was timed.
        self.per_image = full / max(1, n_val) if full else trial.user_attrs.get("latency_ms", 0.0) / 1000
        if per_image_s is not None:
            self.per_image = per_image_s

    def choose(self, total_s: float) -> Extras:
        share = self.sf.run.extras_share
        kept, why = dict.fromkeys(Extras.names(), True), []
        for name in Extras.names():
            price = self.parts(Extras(**kept))[0] - self.parts(Extras(**{**kept, name: False}))[0]
            if price > share * total_s:
                kept[name] = False
                why.append((name, f"{Extras.label(name)} left out: priced at {price:.0f} s after the retrain, more "
                                  f"than run.extras_share ({share:.0%}) of the {total_s / 60:.0f}-min budget"))
        return Extras(**kept, why=tuple(why))

    def parts(self, extras: Extras) -> tuple[float, float, float]:
        """(fixed work, latency at the shipped variant's fewest runs, latency at full runs)."""
        fs, n_val, per_image = self.sf.final, self.n_val, self.per_image
        views = len(fs.tta.scales) * (1 + fs.tta.hflip + fs.tta.vflip)
        int8 = fs.int8.enabled and extras.int8
        variants = [TORCH_FP32, ORT_FP32, *([ORT_INT8] if int8 else [])]
        each = sum(VARIANT_COST[v] for v in variants)  # one image through every variant
        tta = views if views > 1 else 0

        def cost(variant: Variant) -> float:  # one image, a pass per view with TTA
            return VARIANT_COST[variant.with_tta(False)] * (views if variant.tta else 1)

        fallback = VARIANT_COST[ORT_INT8] if int8 else 0.0  # an INT8 fallback's val score
        val_tta = sum(cost(v.with_tta()) for v in VAL_TTA if v in variants) if tta else 0.0
        val_images = n_val * (each + val_tta + fallback)
        # the holdout as the plain recipe ships: INT8 (or ORT fp32) with TTA when there are views
        shipped = variants[-1].with_tta(tta > 0)
        holdout_images = self.n_holdout * sum(cost(v) for v in holdout_variants(shipped,
                                                                               references=extras.holdout_references))
        n_calib = fs.int8.calibration_images if self.n_train is None else min(self.n_train, fs.int8.calibration_images)
        calibration = CALIBRATIONS * CALIBRATION_COST * n_calib if int8 else 0
        fixed = per_image * (val_images + holdout_images + calibration) + EXPORT_S + BUNDLE_WRITE_S
        calls = 2 + tta  # per timed run of one variant: end to end, with TTA, and the model alone
        latency_full = per_image * each * calls * (fs.latency_runs + LATENCY_WARMUP_RUNS)
        floor_cost = max(VARIANT_COST[v] for v in variants if v != TORCH_FP32)  # ORT fp32 or INT8, whichever ships
        latency_min = per_image * floor_cost * calls * (MIN_RUNS + LATENCY_WARMUP_RUNS)
        return fixed, latency_min, latency_full


def final_epochs(plan: BudgetPlan, spent_s: float, per_epoch_s: float, minimum: int = 1,
                 eval_s: float = 0.0, reserve_s: float | None = None) -> int:
    """Epochs that fit in what is left, each at (1 + epoch_margin) × ``per_epoch_s``; ``eval_s``:
    the final's fixed costs; ``reserve_s`` (default the plan's) the time after the retrain."""
    reserve = reserve_s if reserve_s is not None else plan.reserve_s or 0.0
    left = plan.total_s - spent_s - reserve - eval_s
    return max(minimum, math.floor(left / (per_epoch_s * (1 + plan.epoch_margin))))


def search_time(sf: StudyFile, storage: optuna.storages.BaseStorage) -> float:
    """Search seconds over the whole search: every stage's study for a staged one."""
    total = 0.0
    for name in search_study_names(sf):
        try:
            total += search_seconds(optuna.load_study(study_name=name, storage=storage))
        except KeyError:  # a later stage not started yet
            pass
    return total


class SearchGate:
    """Within `automl run`, whether the search may start another trial.

    It may not when the trial, at the median length of the completed ones, would still run at the
    search's deadline: its share of the budget (``run.search_fraction``), or earlier if the final
    retrain of the current best would otherwise get fewer than ``run.min_final_epochs`` epochs.
    Without this, a trial started just before the share ran out ate into the final's time.

    The search does not start at all when its share affords fewer than ``run.min_search_trials``
    trials of the baseline's length: too few to pay back the epochs they take from the final,
    which then retrains the baseline with the whole budget. The baseline asks after its first
    epoch (:meth:`baseline_gate`) and ends there when no search will follow; the check after it
    (:meth:`_too_short`) covers a baseline that ran in full.
    """

    def __init__(self, prep: Prepared, plan: BudgetPlan, storage: optuna.storages.BaseStorage):
        self.prep, self.plan, self.storage = prep, plan, storage

    def deadline(self, study: optuna.Study) -> float:
        sf, plan = self.prep.sf, self.plan
        try:
            best = select_trial(study, sf)
        except AutoMLError:  # nothing completed yet
            return plan.search_s
        data = self.prep.data
        n_train, n_val = len(data.train), len(data.val)
        per_epoch = epoch_seconds(best, sf, n_train, n_val)
        need = sf.run.min_final_epochs * per_epoch * (1 + plan.epoch_margin) + fixed_seconds(best, sf, n_train, n_val)
        reserve = reserves(sf) * _reserve(plan, best, sf, data, cpu_image_seconds(self.prep, best))
        return min(plan.search_s, plan.total_s - reserve - need / (1 - distill_share(sf)))

    def baseline_gate(self, predicted_s: float) -> str | None:
        """Why no search will follow a baseline trial predicted to take ``predicted_s``, or None."""
        wanted = self.prep.sf.run.min_search_trials
        if wanted <= 1 or predicted_s <= 0:
            return None
        affordable = math.floor(self.plan.search_s / predicted_s)
        if affordable >= wanted:
            return None
        return (f"no search: its share ({self.plan.search_s / 60:.1f} min) affords ~{affordable} trial(s) of "
                f"~{predicted_s / 60:.1f} min, fewer than the {wanted} a search needs to pay back its time "
                "(run.min_search_trials); the baseline ends after its first epoch and the final retrains it "
                f"with the rest of the budget. {self._budget_for_search(predicted_s)}")

    def _budget_for_search(self, trial_s: float) -> str:
        """The budget at which this search would start, for the user who wants one."""
        sf = self.prep.sf
        need = sf.run.min_search_trials * trial_s / sf.run.search_fraction
        return (f"A search starts at a --budget of about {math.ceil(need / 60)} min or more at this speed "
                f"(run.search_fraction {sf.run.search_fraction:g})")

    def limits(self) -> dict:
        """`run_all`'s keyword arguments that keep a search (in process or a worker's) to the plan."""
        return {"timeout_s": self.plan.search_s, "stop_when": self, "baseline_gate": self.baseline_gate}

    def __call__(self, study: optuna.Study) -> str | None:
        """Why the search stops here, or None to start the next trial."""
        skipped = [t.user_attrs["search_skipped"] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if t.user_attrs.get("search_skipped")]
        if skipped:
            return skipped[0]
        elapsed = search_time(self.prep.sf, self.storage)
        lengths = [t.user_attrs["wall_s"] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if "wall_s" in t.user_attrs]
        typical = statistics.median(lengths) if lengths else 0.0
        deadline = self.deadline(study)
        if (short := self._too_short(study, elapsed, typical, deadline)) is not None:
            return short
        if elapsed + typical <= deadline:
            return None
        return (f"search stopped after {elapsed / 60:.1f} min: a trial takes ~{typical / 60:.1f} min and the search "
                f"must end by {deadline / 60:.1f} min (run.search_fraction, run.min_final_epochs)")


    def _too_short(self, study: optuna.Study, elapsed: float, typical: float, deadline: float) -> str | None:
        """Why the search does not start, when only the baseline has finished and the share
        affords fewer than ``run.min_search_trials`` trials; else None."""
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                if not is_probe(t)]
        wanted = self.prep.sf.run.min_search_trials
        if len(done) != 1 or not done[0].user_attrs.get("baseline") or typical <= 0 or wanted <= 1:
            return None
        affordable = 1 + max(0, math.floor((deadline - elapsed) / typical))
        if affordable >= wanted:
            return None
        return (f"no search: its share affords ~{affordable} trial(s) of ~{typical / 60:.1f} min, fewer than the "
                f"{wanted} a search needs to pay back its time (run.min_search_trials); the final retrains the "
                f"baseline with the rest of the budget. {self._budget_for_search(typical)}")


def _sizes(data) -> dict:
    """The split sizes the work after the retrain is priced for (:func:`reserve_seconds`)."""
    return {"n_val": len(data.val), "n_holdout": 0 if data.holdout is None else len(data.holdout),
            "n_train": len(data.train)}


def _reserve(plan: BudgetPlan, best: FrozenTrial, sf: StudyFile, data, per_image_s: float | None = None,
             extras: Extras | None = None) -> float:
    """:func:`reserve_seconds` for this dataset's splits."""
    return reserve_seconds(plan, best, sf, per_image_s=per_image_s, extras=extras, **_sizes(data))


def cpu_image_seconds(prep: Prepared, trial: FrozenTrial) -> float | None:
    """On CUDA, one image's batch-1 forward of the trial's model on the CPU, with
    ``final.latency_threads`` threads (untrained, measured once and cached like a trial's
    latency): the final scores, quantizes and times every variant on the CPU, and the trial's GPU
    val pass would price that work many times too low. None on a CPU, where the trial's own val
    pass is the unit."""
    if prep.runtime.device.type != "cuda" or "config" not in trial.user_attrs:
        return None
    cfg = TrialConfig.from_dict(trial.user_attrs["config"])
    found = measure_model(cfg.model, cfg.data.num_classes, prep.input_size, Runtime(torch.device("cpu")),
                          latency_cache(prep.sf))
    return found["latency_ms"] / 1000


def baseline_trial(sf: StudyFile, storage: optuna.storages.BaseStorage) -> FrozenTrial | None:
    """The default recipe's trial (the first stage's baseline) with measured epochs, if any."""
    for name in search_study_names(sf):
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            continue
        for t in study.get_trials(deepcopy=False):
            if t.user_attrs.get("baseline") is True and (t.user_attrs.get("epoch_train_s") or t.user_attrs.get("train_s")):
                return t
    return None


@dataclass(frozen=True)
class FinalPlan:
    """The final retrain's time, priced from the selected trial."""

    epochs: int        # planned at (1 + epoch_margin) × epoch_s
    epoch_s: float     # one steady training epoch
    fixed_s: float     # setup, warm-up, val passes
    reserve_s: float   # after the retrain
    left_s: float      # for the retrain, fixed costs included
    train_s: float     # for its training epochs alone
    student_s: float = 0.0  # for the two students' training (final.distill), their reserve excluded
    extras: Extras = ALL    # the work after the retrain the reserve prices and the final does

    def expected_epochs(self, epoch_s: float, margin: float) -> float:
        """Epochs a config of this epoch time would get in the final."""
        return self.train_s / (epoch_s * (1 + margin))


def plan_final(plan: BudgetPlan, spent_s: float, best: FrozenTrial, sf: StudyFile, data,
               per_image_s: float | None = None) -> FinalPlan:
    """``per_image_s``: the unit the reserve is priced in, when not the trial's val pass
    (:func:`cpu_image_seconds`)."""
    n_train, n_val = len(data.train), len(data.val)
    per_epoch = epoch_seconds(best, sf, n_train, n_val)
    fixed = fixed_seconds(best, sf, n_train, n_val)
    extras = choose_extras(plan, best, sf, per_image_s=per_image_s, **_sizes(data))
    reserve = _reserve(plan, best, sf, data, per_image_s, extras)
    after = plan.total_s - spent_s - reserves(sf) * reserve  # for training: the teacher's, the students'
    students = distill_share(sf) * max(0.0, after)
    epochs = final_epochs(plan, spent_s, per_epoch, sf.run.min_final_epochs, fixed,
                          reserves(sf) * reserve + students)
    left = after - students
    return FinalPlan(epochs, per_epoch, fixed, reserve, left, left - fixed, students, extras)


def _expected(fp: FinalPlan, best: FrozenTrial, sf: StudyFile, prep: Prepared,
              storage) -> dict:
    """Final epochs the selected trial's config and the default recipe's would get in the same
    time, each at its own measured epoch: the price of the selected config's speed."""
    n_train, n_val = len(prep.data.train), len(prep.data.val)
    out = {"selected": {"trial": best.number, "epoch_s": round(fp.epoch_s, 3),
                        "epochs": round(fp.expected_epochs(fp.epoch_s, sf.run.epoch_margin), 1)}}
    base = baseline_trial(sf, storage)
    if base is not None:
        spe = epoch_seconds(base, sf, n_train, n_val)
        out["baseline"] = {"trial": base.number, "epoch_s": round(spe, 3),
                           "epochs": round(fp.expected_epochs(spe, sf.run.epoch_margin), 1)}
    log.info("expected final epochs in %.0f s of training: selected trial %d ~%.0f (%.2f s/epoch)%s",
             fp.train_s, best.number, out["selected"]["epochs"], fp.epoch_s,
             "" if base is None else f", baseline trial {base.number} ~{out['baseline']['epochs']:.0f} "
                                     f"({out['baseline']['epoch_s']:.2f} s/epoch)")
    return out


def _retime(plan: BudgetPlan, best: FrozenTrial, sf: StudyFile, data, done_by: float,
            cpu_image_s: float | None = None, extras: Extras | None = None) -> Callable[[float], float]:
    """For the retrain's re-pricing past its midway look: the end of its training from the reserve
    re-priced at its own faster subset val pass (per image), which is warm where the trial's (its
    first, for a baseline ended after one epoch) may not be. With ``cpu_image_s`` (a CUDA run) the
    reserve keeps that CPU unit: the retrain's passes run on the GPU, the work after it does not.
    ``extras``: the plan's, kept whatever the new price (the final does what was planned)."""
    n_val = len(data.val)
    n_sub = len(subset_indices(n_val, sf.eval.subset))

    def retime(subset_pass_s: float) -> float:
        unit = subset_pass_s / n_sub if cpu_image_s is None else cpu_image_s
        return done_by - _reserve(plan, best, sf, data, per_image_s=unit, extras=extras)

    return retime


def _record(study: optuna.Study, **attrs) -> None:
    for k, v in attrs.items():
        study.set_user_attr(f"run_{k}", v)


def run_overnight(prep: Prepared, total_s: float, *, on_study=None, events=None, callbacks=None, completed_hooks=None,
                  final_kwargs: dict | None = None, search: Callable[[], optuna.Study] | None = None):
    """Search within its share, then retrain the selected trial with what is left; returns the
    final stage's result. ``search`` replaces the in-process search (``automl run --workers``:
    worker processes, each with the same :class:`SearchGate`, started with ``--run-budget``); it
    returns when they have all stopped."""
    from automl.final import run_final
    from automl.final.retrain import TrainUntil

    prep = dataclasses.replace(prep, sf=for_run(prep.sf))
    sf = prep.sf
    plan = BudgetPlan.split(total_s, sf)
    t0 = time.monotonic()
    study = None
    try:
        study = final_study(sf, prep.storage_url)
    except KeyError:
        pass
    state = study.user_attrs.get("run_state") if study is not None else None
    if state == "done":
        log.info("this run is complete; the bundle is in %s (delete run_state to redo the final)",
                 (sf.run_dir / "bundle").name)
        return None
    if (short := plan.shortfall(sf)) is not None:
        log.warning(short)
    storage = open_storage(prep.storage_url, sf.storage)
    if state != "final":
        if search is not None:
            study = search()
        else:
            study = run_all(prep, on_study=on_study, events=events, callbacks=callbacks,
                            completed_hooks=completed_hooks, **SearchGate(prep, plan, storage).limits())
    interrupts.raise_if_requested()  # never start the final after a stop that something swallowed
    spent = search_time(sf, storage)
    if state != "final":  # the state goes last: a run killed here resumes in the final with all it needs
        base = baseline_trial(sf, storage)
        _record(study, budget_s=total_s, search_s=round(spent, 1),
                search_skipped=None if base is None else base.user_attrs.get("search_skipped"), state="final")
    best = select_trial(study, sf)
    cpu_s = cpu_image_seconds(prep, best)
    fp = plan_final(plan, spent, best, sf, prep.data, cpu_s)
    log.info("search used %.0f s of %.0f s; final retrain of trial %d: %d epochs of ~%.2f s planned, %.0f s fixed, "
             "%.0f s kept for export, INT8 and latency%s", spent, total_s, best.number, fp.epochs, fp.epoch_s,
             fp.fixed_s, fp.reserve_s, "" if not fp.student_s else
             f" (each model); the students get {fp.student_s:.0f} s (final.distill.share {distill_share(sf):.2f})")
    fits = fp.expected_epochs(fp.epoch_s, sf.run.epoch_margin)
    if fits < fp.epochs:
        log.warning("the budget leaves time for ~%d final epochs and run.min_final_epochs keeps %d: expect the run "
                    "to end ~%.1f min past its budget (a longer --budget or a lower run.min_final_epochs avoids "
                    "this)", max(0, math.floor(fits)), fp.epochs,
                    (fp.epochs - max(0.0, fits)) * fp.epoch_s * (1 + sf.run.epoch_margin) / 60)
    for line in fp.extras.notes():
        log.info(line)
    _record(study, final_epochs_planned=fp.epochs, epoch_s=round(fp.epoch_s, 2), final_trial=best.number,
            fixed_s=round(fp.fixed_s, 1), reserve_s=round(fp.reserve_s, 1), extras=fp.extras.as_dict(),
            expected_epochs=_expected(fp, best, sf, prep, storage),
            **({"distill_share": distill_share(sf), "student_plan_s": round(fp.student_s, 1)} if fp.student_s else {}))
    t_final = time.monotonic()
    sub, full = _passes(best)
    end = t_final + plan.total_s - spent
    teacher_end = end - fp.student_s - (reserves(sf) - 1) * fp.reserve_s
    until = TrainUntil(t_final + fp.left_s, sub, full, sf.run.min_final_epochs, done_by=teacher_end,
                       retime=_retime(plan, best, sf, prep.data, teacher_end, cpu_s, fp.extras))
    # resumed in the final: a retrain that finished before the kill is reused (same config, epochs, split)
    kwargs = {"reuse_model": state == "final", "until": until, "distill": False, "extras": fp.extras,
              **(final_kwargs or {})}
    result = run_final(sf, storage=prep.storage_url, epochs=fp.epochs, data=prep.data, **kwargs)
    retrain = result.report.get("retrain", {}) if result is not None else {}
    _record(study, final_epochs=retrain.get("epochs", fp.epochs),
            post_s=round(time.monotonic() - t_final - retrain.get("wall_s", 0.0), 1)
            if not retrain.get("reused") else None)
    if result is not None and sf.final.distill is not None:
        result = _distill(prep, study, result, TrainUntil(end - fp.reserve_s, sub, full, 1, done_by=end),
                          kwargs.get("out"))
    final_s = time.monotonic() - t_final
    _record(study, final_s=round(final_s, 1), used_frac=round((spent + final_s) / total_s, 3), state="done",
            session_s=round(time.monotonic() - t0, 1))
    return result


def _distill(prep: Prepared, study: optuna.Study, result, until, out):
    """The students within ``until`` (their training ends at its ``finish_by``, the student's bundle
    by ``done_by``); a failure keeps the teacher's bundle and is recorded on the study."""
    from automl.final.distill import run_distill

    t0 = time.monotonic()
    log.info("students: %.0f s to train, the student's bundle by %.0f s from now", until.finish_by - t0,
             until.done_by - t0)
    try:
        table = run_distill(prep.sf, storage=prep.storage_url, data=prep.data, out=out, until=until).table
    except AutoMLError as exc:
        log.error("distillation failed; the bundle ships the teacher: %s", exc)
        _record(study, distill_error=str(exc))
        return result
    _record(study, student_epochs=table["epochs"], student_s=round(time.monotonic() - t0, 1))
    return dataclasses.replace(result, report={**result.report, "distill": table})
