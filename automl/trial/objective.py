"""The Optuna objective: sample a config, measure it, train it, report each epoch, prune.

Everything a later stage or the dashboard needs is stored on the trial's user_attrs:
``config`` (the resolved TrialConfig), ``seed``, ``params_m``, ``latency_ms``,
``miou_per_class``, ``epoch_times_s``, ``epochs_run``, ``stop_reason``, ``compute_s``,
``wall_s``, ``peak_mem_mb``, and where the time went, fixed costs apart from per-epoch ones
(``setup_s``, ``epoch_train_s``, ``eval_full_s``/``eval_subset_s`` per pass, ``measure_s``,
``hooks_s``): `automl run` prices the final from them. They are written when the trial starts and when it ends (one storage
write each: Optuna has no multi-attribute write), never per epoch, where the only write is the
``trial.report`` of a scored epoch.
"""

from __future__ import annotations

import gc
import logging
import resource
import time
from dataclasses import dataclass
from typing import Callable

import optuna
import torch
from optuna.trial import TrialState

from automl import faults, interrupts
from automl.data.folder import Dataset
from automl.owner import this_process
from automl.space.sample import ResolvedSpace
from automl.trial.engine import (
    EpochResult,
    FitResult,
    NonFiniteLoss,
    Runtime,
    TimeStats,
    TrialTimeout,
    fit,
)
from automl.trial.latency import LatencyCache, measure_model
from automl.trial.length import EqualTime, GatedBaseline, Length, steady_epoch_s
from automl.trial.progress import TrialEvents
from automl.trial.timelimit import time_limit
from automl.trial_config import DataSpec, TrialConfig

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
INTERRUPTED = "failed: interrupted (retried on resume)"
SURPLUS = "surplus: other workers already reached the study total"


# The study attr holding the reference epoch time of equal-time trials: the steady training epoch
# of the study's first trial (the baseline, or a stage's start), in seconds.
REF_ATTR = "ref_epoch_s"


class SurplusTrial(RuntimeError):
    """Started in a race after the study total was reached; ends FAILED and is not counted."""


# Called after a trial trains to completion, while its model is still in memory:
# (trial, config, fit result, objective value). E.g. keep the best weights, draw predictions.
CompletedHook = Callable[[optuna.Trial, TrialConfig, FitResult, float], None]


@dataclass
class TrialSettings:
    epochs: int
    eval_subset: float = 1.0
    eval_batch_size: int = 8
    num_workers: int | None = None  # None: automl.trial.engine.loader_workers decides
    time_limit_s: float | None = None
    base_seed: int = 0
    total_trials: int | None = None  # the study total, for the surplus check
    objectives: tuple[str, ...] = ("val_miou",)
    max_latency_ms: float | None = None
    max_params_m: float | None = None
    # Epochs whose val score the pruner reads (None: every epoch); the last is always evaluated.
    eval_epochs: frozenset[int] | None = None
    # The LR schedule's span (None: `epochs`); see budget.trial_schedule_epochs.
    schedule_epochs: int | None = None
    # Equal-time trials (budget.equal: time): `epochs` and `schedule_epochs` are counted in the
    # baseline's epochs (REF_ATTR on the study), each trial converts them to its own epochs.
    equal_time: bool = False
    # `automl run`: given the baseline's predicted wall time after its first epoch, why no search
    # can follow (the baseline then ends there), or None (automl.overnight.SearchGate.baseline_gate)
    baseline_gate: Callable[[float], str | None] | None = None

    @property
    def prune(self) -> bool:
        return len(self.objectives) == 1  # Optuna cannot prune multi-objective trials


def seed_of(base_seed: int, number: int) -> int:
    """The training seed of trial ``number`` of a study with ``sampler.seed`` ``base_seed``."""
    return base_seed * 100_003 + number


def trial_seed(trial: optuna.Trial, base_seed: int) -> int:
    """A retried trial keeps its original's seed, so the retry reproduces the same run."""
    # RetryHeartbeatStaleTrialCallback.retried_trial_number() wants a FrozenTrial; this reads the
    # same system attr ("failed_trial": the first failed trial's number) from a live Trial.
    original = trial.storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
    return seed_of(base_seed, trial.number if original is None else original)


def time_attrs(times: TimeStats) -> dict:
    """Fixed costs apart from per-epoch ones: each epoch's training and one val pass of each kind."""
    def mean(xs: list[float]) -> float | None:
        return round(sum(xs) / len(xs), 4) if xs else None

    return {"setup_s": round(times.setup_s, 3), "epoch_train_s": [round(x, 4) for x in times.epoch_train_s],
            "eval_full_s": mean(times.eval_full_s), "eval_subset_s": mean(times.eval_subset_s),
            "eval_passes": {"full": len(times.eval_full_s), "subset": len(times.eval_subset_s)},
            "hooks_s": round(times.hooks_s, 3)}


def peak_memory_mb(runtime: Runtime) -> float:
    if runtime.device.type == "cuda":
        return torch.cuda.max_memory_allocated(runtime.device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process high-water mark


class Objective:
    def __init__(self, space: ResolvedSpace, data: Dataset, data_spec: DataSpec, runtime: Runtime,
                 settings: TrialSettings, input_size: tuple[int, int], events: TrialEvents | None = None,
                 completed_hooks: list[CompletedHook] | None = None, latency_cache: LatencyCache | None = None,
                 on_owned: Callable[[], None] = lambda: None):
        self.space, self.data, self.data_spec, self.runtime = space, data, data_spec, runtime
        self.on_owned = on_owned
        self.settings, self.input_size = settings, input_size
        self.events = events or TrialEvents()
        self.completed_hooks = list(completed_hooks or [])
        self.latency_cache = latency_cache or LatencyCache(None)
        self.length: Length | None = None  # the running trial's (one trial at a time per Objective)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        t_start = time.monotonic()
        # Owned before anything else can happen to it: a trial whose process dies from here on is
        # reaped by pid (this host) or heartbeat (elsewhere). Signals are held until here
        # (automl.interrupts.held, around study.optimize), and on_owned lets the next process on
        # this host create its trial.
        faults.point("trial_created")
        trial.set_user_attr("worker", this_process())
        self.on_owned()
        history: list[EpochResult] = []
        times = TimeStats()
        self.length = None
        attrs: dict = {}
        # Whatever ends the trial before a reason is known is an interruption: a signal (let in
        # only now, inside this try) or any other BaseException. Surplus check, sampling, the
        # latency probe, training and the completed hooks are all inside it.
        stop_reason = INTERRUPTED
        try:
            with interrupts.delivered():
                value = self._run(trial, t_start, attrs, history, times)
            # signals are held again: a "completed" trial is one Optuna is about to tell
            stop_reason = "completed"
            return value
        except SurplusTrial:
            stop_reason = SURPLUS
            raise
        except optuna.TrialPruned as exc:
            stop_reason = str(exc)
            raise
        except NonFiniteLoss as exc:
            # A diverging config is a legitimate, informative outcome: prune it, don't fail it.
            stop_reason = f"pruned: {exc}"
            raise optuna.TrialPruned(stop_reason) from None
        except TrialTimeout as exc:
            stop_reason = f"failed: {exc}"
            raise
        except Exception as exc:
            stop_reason = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            raise
        finally:
            if stop_reason == SURPLUS:
                self._set(trial, "stop_reason", SURPLUS)  # not a trial of the study: nothing else to record
            else:
                self._record_end(trial, stop_reason, history, times, t_start)

    def _run(self, trial: optuna.Trial, t_start: float, attrs: dict, history: list[EpochResult],
             times: TimeStats) -> float | tuple[float, ...]:
        s = self.settings
        if s.total_trials is not None and self._is_surplus(trial, s.total_trials):
            trial.study.stop()
            raise SurplusTrial(SURPLUS)
        cfg = self.space.sample(trial, data=self.data_spec, epochs=s.epochs, seed=trial_seed(trial, s.base_seed),
                                schedule_epochs=s.schedule_epochs)
        faults.point("sampled")
        if self.runtime.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.runtime.device)
        t_measure = time.perf_counter()
        attrs.update({"config": cfg.to_dict(), "seed": cfg.seed, **self._measure(cfg)})
        attrs["measure_s"] = round(time.perf_counter() - t_measure, 3)
        faults.point("measured")
        original = trial.storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
        if original is not None:
            attrs["retry_of"] = original
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        self.events.trial_started(trial.number, cfg)

        # the seed probe must finish: it is the baseline's second seed, not a candidate
        probe = bool(trial.user_attrs.get("seed_probe"))

        def on_epoch(res: EpochResult) -> None:
            history.append(res)
            self.events.epoch_done(trial.number, res, self.length.epochs)
            faults.point("epoch")
            if s.prune and res.step is not None:
                trial.report(res.miou, res.step)
                if not res.full_val and not probe and trial.should_prune():
                    where = f"epoch {res.epoch}" + (f" (reference epoch {res.step})" if res.step != res.epoch else "")
                    raise optuna.TrialPruned(f"pruned at {where} (val mIoU {res.miou:.4f})")

        self._enforce_constraints(trial, attrs)
        self.length = self._length(trial, cfg, t_start)
        with time_limit(s.time_limit_s):
            result, cfg = self._fit_with_oom_retry(trial, cfg, on_epoch, times, history, t_start)
        value = history[-1].miou
        faults.point("trained")
        t_hooks = time.perf_counter()
        for hook in self.completed_hooks:
            try:
                hook(trial, cfg, result, value)
            except Exception as exc:  # noqa: BLE001 - a side output must not fail a trained trial
                log.warning("trial %d: %s failed: %s: %s", trial.number, type(hook).__name__,
                            type(exc).__name__, exc)
        times.hooks_s = time.perf_counter() - t_hooks
        faults.point("hooks_done")
        if not s.prune:
            measured = {"val_miou": value, "latency_ms": attrs["latency_ms"], "params_m": attrs["params_m"]}
            return tuple(measured[name] for name in s.objectives)
        return value

    @staticmethod
    def _set(trial: optuna.Trial, key: str, value) -> None:
        try:
            trial.set_user_attr(key, value)
        except Exception:  # noqa: BLE001 - storage gone (e.g. database restarting); the outcome stands
            log.warning("could not record %s for trial %d", key, trial.number)

    def _enforce_constraints(self, trial: optuna.Trial, attrs: dict) -> None:
        """Record constraint values (Optuna's and, for the dashboard, user_attrs); stop an
        infeasible configuration before it trains."""
        s, over = self.settings, []
        for name, limit, unit in (("latency_ms", s.max_latency_ms, "ms"), ("params_m", s.max_params_m, "M")):
            if limit is None:
                continue
            excess = attrs[name] - limit
            trial.set_constraint(name, excess)
            trial.set_user_attr(f"constraint_{name}", round(excess, 4))
            if excess > 0:
                over.append(f"{name.split('_')[0]} {attrs[name]:.2f} {unit} > {limit:g} {unit}")
        if s.max_latency_ms is not None or s.max_params_m is not None:
            trial.set_user_attr("feasible", not over)
        if over:
            raise optuna.TrialPruned("infeasible before training: " + ", ".join(over))

    def _length(self, trial: optuna.Trial, cfg: TrialConfig, t_start: float) -> Length:
        """Equal epochs, or (budget.equal: time) equal training time in the reference's epochs. The
        study's first trial (enqueued with a "baseline" attr) is the reference: it trains its epochs
        and measures the reference epoch for the others; under a budget gate it may end early."""
        s = self.settings
        if s.baseline_gate is not None and trial.user_attrs.get("baseline") is True:
            return GatedBaseline(cfg.epochs, cfg.schedule_span, s.eval_epochs, s.baseline_gate,
                                 lambda: time.monotonic() - t_start)
        if not s.equal_time or "baseline" in trial.user_attrs:
            return Length(cfg.epochs, cfg.schedule_span, s.eval_epochs)

        def lookup() -> float | None:
            try:
                return trial.study.user_attrs.get(REF_ATTR)
            except Exception:  # noqa: BLE001 - storage unreachable for a moment: ask again later
                return None

        return EqualTime(cfg.epochs, cfg.schedule_span, s.eval_epochs, lookup(), lookup)

    def _fit_with_oom_retry(self, trial, cfg, on_epoch, times, history, t_start):
        """Out of memory before the first report: retry once at half the batch size."""
        s = self.settings
        deadline = t_start + s.time_limit_s if s.time_limit_s else None
        for attempt in (0, 1):
            try:
                if attempt:  # the same plan, measured afresh
                    self.length = self._length(trial, cfg, t_start)
                result = fit(cfg, self.data, self.runtime, on_epoch=on_epoch, eval_subset=s.eval_subset,
                             eval_batch_size=s.eval_batch_size, num_workers=s.num_workers, deadline=deadline,
                             times=times, length=self.length)
                return result, cfg
            except (torch.OutOfMemoryError, MemoryError):
                if attempt == 1 or history or cfg.batch_size < 2:
                    raise
                gc.collect()
                if self.runtime.device.type == "cuda":
                    torch.cuda.empty_cache()
                cfg = cfg.with_changes(batch_size=cfg.batch_size // 2)
                log.warning("trial %d ran out of memory; retrying at batch size %d", trial.number, cfg.batch_size)
                trial.set_user_attr("config", cfg.to_dict())
                trial.set_user_attr("oom_retry", True)
        raise AssertionError("unreachable")

    @staticmethod
    def _is_surplus(trial: optuna.Trial, total: int) -> bool:
        """Two workers may pass the budget gate together; the one with the higher number yields."""
        ahead = [t for t in trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
                 if t.number < trial.number]
        return len(ahead) >= total

    def _record_end(self, trial, stop_reason: str, history: list[EpochResult], times: TimeStats,
                    t_start: float) -> None:
        final = {
            "stop_reason": stop_reason,
            "epochs_run": history[-1].epoch if history else 0,
            "epoch_times_s": [round(h.seconds, 3) for h in history],
            "miou_history": [round(h.miou, 5) for h in history],
            "lr_history": [float(f"{h.lr:.4g}") for h in history],  # LR at the end of each scored epoch
            "wall_s": round(time.monotonic() - t_start, 3),
            "peak_mem_mb": round(peak_memory_mb(self.runtime), 1),
            "compute_s": round(times.compute_s, 3), "train_s": round(times.train_s, 3),
            "eval_s": round(times.eval_s, 3),
            **time_attrs(times),
        }
        length = self.length
        if isinstance(length, EqualTime) and length.timed:
            # the trial's own epochs for its share of time: a rerun trains this config
            cfg = TrialConfig.from_dict(trial.user_attrs["config"])
            final["config"] = cfg.with_changes(epochs=length.epochs, schedule_epochs=length.schedule_epochs).to_dict()
            final["equal_time"] = {"ref_epoch_s": round(length.ref_s, 4), "epochs": length.epochs,
                                   "schedule_epochs": length.schedule_epochs, "ref_epochs": length.ref_epochs}
        if isinstance(length, GatedBaseline) and length.predicted_s is not None:
            final["predicted_wall_s"] = round(length.predicted_s, 1)
            if length.cut is not None:
                final["search_skipped"] = length.cut
        if length is not None and self.settings.equal_time and "baseline" in trial.user_attrs:
            self._set_reference(trial, times)
        if history:
            final["miou_per_class"] = dict(zip(self.data_spec.classes, history[-1].per_class_iou))
        for k, v in final.items():
            try:
                trial.set_user_attr(k, v)
            except Exception:  # noqa: BLE001 - storage gone (e.g. database restarting); the result stands
                log.warning("could not record %s for trial %d", k, trial.number)
                break
        gc.collect()
        if self.runtime.device.type == "cuda":
            torch.cuda.empty_cache()

    @staticmethod
    def _set_reference(trial: optuna.Trial, times: TimeStats) -> None:
        """The study's first trial measures the epoch every equal-time trial is counted in."""
        ref = steady_epoch_s(times.epoch_train_s)
        if ref is None:
            return
        try:
            if trial.study.user_attrs.get(REF_ATTR) is None:
                trial.study.set_user_attr(REF_ATTR, round(ref, 4))
        except Exception:  # noqa: BLE001 - storage gone; a later reference trial (its retry) sets it
            log.warning("could not record the reference epoch time for trial %d", trial.number)

    def _measure(self, cfg: TrialConfig) -> dict:
        """Parameter count and batch-1 latency at the study's input size, before training (cached)."""
        found = measure_model(cfg.model, cfg.data.num_classes, self.input_size, self.runtime, self.latency_cache)
        return {**found, "latency_device": self.latency_cache.device(self.runtime), "input_size": list(self.input_size)}
