"""Run a search: check everything, open the study, enqueue the baseline, optimize, summarise.

Order of checks, cheapest first, all before any training: study file and search space
(pydantic) → encoder weights (cached, or a download that works) → storage URL → dataset folder
(pairing, readability, sizes, labels through data.label_map) → every class has train pixels →
which architecture/encoder pairs work at the data's input size → the baseline's values.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from automl import faults, interrupts
from automl.config import StudyFile
from automl.data.cache import CacheSpec
from automl.data.coverage import require_every_class
from automl.data.folder import Dataset, load_dataset, padded_size
from automl.data.split import assign_roles, keep_data_split
from automl.data.synthetic import CLASSES as SYNTHETIC_CLASSES
from automl.data.synthetic import generate
from automl.errors import AutoMLError, ConfigError
from automl.pruners import NO_PRUNER, PRUNERS, PrunerKind
from automl.space.sample import ResolvedSpace
from automl.space.schema import load_search_space
from automl.study.budget import FINISHED, budget_state, trials_since_best
from automl.study.checkpoints import BestTrialCheckpoint
from automl.study.recovery import recover
from automl.study.selection import SEED_PROBE, selected_or_none
from automl.study.stages import check_patterns, stage_start, stage_study_name, study_budgets
from automl.study.storage import mask_url, open_storage, resolve_url
from automl.study.trial_start import TrialStart, start_lock
from automl.trial.compat import compatible_pairs
from automl.trial.engine import Runtime
from automl.trial.latency import LatencyCache, measure_model
from automl.trial.model import check_encoder_weights
from automl.trial.objective import SURPLUS, CompletedHook, Objective, TrialSettings
from automl.trial.progress import TrialEvents
from automl.trial_config import DataSpec, ModelSpec

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    sf: StudyFile
    data: Dataset
    data_spec: DataSpec
    space: ResolvedSpace
    input_size: tuple[int, int]
    runtime: Runtime
    storage_url: str


def load_data(sf: StudyFile) -> Dataset:
    if sf.data.root is None and sf.data.synthetic is not None:
        if tuple(sf.data.classes) != SYNTHETIC_CLASSES:
            raise ConfigError(f"data.classes: synthetic data has classes {list(SYNTHETIC_CLASSES)}")
        generate(sf.data_root, **sf.data.synthetic.model_dump())
    # a study that carves its selection split from train/ needs no val/ folder
    required = ("train",) if sf.data.val_fraction is not None else ("train", "val")
    return assign_roles(load_dataset(sf.data_root, tuple(sf.data.classes), sf.data.ignore_index, required=required,
                                     label_map=sf.data.label_map, layout=sf.data.layout, cache=cache_spec(sf)),
                        sf.data)


# data.cache: auto, on a CPU: the decoded size from which the cache is used
CACHE_FROM_GB = 1.0


def cache_spec(sf: StudyFile) -> CacheSpec | None:
    """The decoded-data cache ``data.cache`` asks for: off, on, or auto (on CUDA always; on a CPU
    from CACHE_FROM_GB of decoded data)."""
    mode = sf.data.cache
    if mode == "off":
        return None
    cuda = sf.device.startswith("cuda") or (sf.device == "auto" and torch.cuda.is_available())
    return CacheSpec(sf.cache_dir, 0 if mode == "on" or cuda else int(CACHE_FROM_GB * 1e9))


def prepare(sf: StudyFile, *, storage: str | None = None) -> Prepared:
    """Everything a search (``automl search``, ``automl run``, a worker) checks and loads before
    its first trial."""
    space_doc = load_search_space(sf.search_space)
    # before any data is read: a trial that cannot get its encoder weights fails, and so would every one
    check_encoder_weights(space_doc.model.encoder_weights, space_doc.model.encoders,
                          f"{sf.search_space} model.encoder_weights")
    url = resolve_url(sf, storage)
    data = load_data(sf)
    require_every_class(data, sf.data)
    input_size = padded_size(data.max_size(), sf.data.pad_divisor)
    depths = tuple(int(d) for d in space_doc.model.encoder_depth.values())
    pairs, _ = compatible_pairs(space_doc.model.architectures, space_doc.model.encoders, depths, input_size)
    runtime = Runtime.resolve(sf.device)
    pairs = feasible_pairs(pairs, min(depths), sf, runtime, input_size)
    space = ResolvedSpace(space_doc, pairs)
    space.checked_baseline()
    space.checked_portfolio()
    check_patterns(sf, list(space.parameters()))
    data_spec = DataSpec(classes=tuple(sf.data.classes), ignore_index=sf.data.ignore_index,
                         pad_divisor=sf.data.pad_divisor, label_map=sf.data.label_map)
    return Prepared(sf, data, data_spec, space, input_size, runtime, url)


def latency_cache(sf: StudyFile) -> LatencyCache:
    return LatencyCache(sf.run_dir / "latency_cache.json", threads=sf.final.latency_threads)


def feasible_pairs(pairs: list[str], depth: int, sf: StudyFile, runtime: Runtime,
                   input_size: tuple[int, int]) -> list[str]:
    """Drop pairs whose smallest variant already breaks a constraint: they are never sampled."""
    c = sf.constraints
    if c.max_latency_ms is None and c.max_params_m is None:
        return pairs
    cache, ok, smallest = latency_cache(sf), [], None
    for pair in pairs:
        arch, encoder = pair.split("/", 1)
        m = measure_model(ModelSpec(arch=arch, encoder=encoder, encoder_depth=depth), len(sf.data.classes),
                          input_size, runtime, cache)
        if (c.max_latency_ms is None or m["latency_ms"] <= c.max_latency_ms) and \
                (c.max_params_m is None or m["params_m"] <= c.max_params_m):
            ok.append(pair)
        else:
            log.info("never sampled: %s (%.1f ms, %.2f M params: over the constraints)", pair, m["latency_ms"],
                     m["params_m"])
        if smallest is None or m["latency_ms"] < smallest[1]["latency_ms"]:
            smallest = (pair, m)
    if not ok:
        raise ConfigError(f"constraints: no architecture/encoder pair meets them on {cache.device(runtime)}; the "
                          f"fastest, {smallest[0]}, takes {smallest[1]['latency_ms']:.1f} ms with "
                          f"{smallest[1]['params_m']:.2f} M params")
    return ok


def _pruner_kind(sf: StudyFile) -> PrunerKind:
    return PRUNERS[NO_PRUNER if sf.multi_objective else sf.pruner.type]


def pruner_epochs(sf: StudyFile) -> frozenset[int] | None:
    """The epochs at which the pruner reads a score, when ``eval.epochs: pruner`` asks to evaluate
    only those (plus the last). Evaluating elsewhere only draws the curve, at the cost of a val
    pass; None: every epoch."""
    if sf.eval.epochs == "every":
        return None
    return _pruner_kind(sf).reads(sf.pruner, sf.budget.trial_epochs)


def make_pruner(sf: StudyFile) -> optuna.pruners.BasePruner:
    return _pruner_kind(sf).build(sf.pruner, sf.budget.trial_epochs)


_METRIC_NAMES = {"val_miou": "val mIoU", "latency_ms": "latency ms", "params_m": "params M"}


def open_study(sf: StudyFile, storage_url: str, *, worker_index: int = 0, study_name: str | None = None) -> optuna.Study:
    storage = open_storage(storage_url, sf.storage)
    directions = ["maximize"] + ["minimize"] * (len(sf.objectives) - 1)
    study = optuna.create_study(study_name=study_name or sf.name, storage=storage, directions=directions,
                                pruner=make_pruner(sf), load_if_exists=True)
    # A resumed search (or a second worker) must not replay the first session's random draws.
    offset = len(study.get_trials(deepcopy=False)) + 7919 * worker_index
    study.sampler = optuna.samplers.TPESampler(seed=sf.sampler.seed + offset,
                                               n_startup_trials=sf.sampler.n_startup_trials)
    return study


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


class FailureStreak:
    """Stops the search after N failed trials in a row: a broken setup must not burn the night."""

    def __init__(self, limit: int):
        self.limit, self.streak, self.tripped = limit, 0, False

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.user_attrs.get("stop_reason") == SURPLUS:
            return
        self.streak = self.streak + 1 if trial.state == TrialState.FAIL else 0
        if self.streak >= self.limit:
            self.tripped = True
            study.stop()


def keep_model_choices(study: optuna.Study, prep: Prepared) -> None:
    """Sample the model from the same list for the whole life of a study.

    Which pairs are usable depends on measured latency (constraints), so a resumed session, or a
    worker on another machine, can find a different list; Optuna refuses a categorical whose
    choices change within a study, and every trial would fail. The first session's list is kept
    on the study; a pair it holds that is now over a limit is still pruned before it trains.
    """
    stored = study.user_attrs.get("model_choices")
    if stored is None:
        study.set_user_attr("model_choices", list(prep.space.pairs))
    elif list(stored) != list(prep.space.pairs):
        log.info("model choices: keeping the study's %d pairs (this session found %d usable)", len(stored),
                 len(prep.space.pairs))
        prep.space.pairs = list(stored)


def setup_study(prep: Prepared, *, worker_index: int = 0, enqueue_baseline: bool = True,
                stage_index: int | None = None, start_params: dict | None = None) -> optuna.Study:
    """Open (or create) the study of the whole search or of one stage, and enqueue its first trial.

    ``start_params``: where a stage starts (the previous stage's winner); default the baseline.
    """
    sf = prep.sf
    start = start_params if start_params is not None else prep.space.checked_baseline()
    study = open_study(sf, prep.storage_url, worker_index=worker_index,
                       study_name=stage_study_name(sf, stage_index))
    keep_model_choices(study, prep)
    keep_data_split(study, prep.data)
    if prep.data.cache is not None:  # the last session's: where the decoded data is, and whether it was reused
        study.set_user_attr("data_cache", prep.data.cache.as_dict())
    faults.point("study_opened")
    if stage_index is not None:
        # The first worker to reach a stage decides what it fixes; a worker that finished the
        # previous stage later (and saw another winner) follows that decision.
        fixed = study.user_attrs.get("fixed_params")
        if fixed is None:
            fixed = stage_start(sf.stages[stage_index], start)
            study.set_user_attr("stage", sf.stages[stage_index].name)
            study.set_user_attr("fixed_params", fixed)
        start = {**start, **fixed}
        study.sampler = optuna.samplers.PartialFixedSampler(fixed, study.sampler)
    fresh = not study.get_trials(deepcopy=False)
    if fresh:
        if study.metric_names is None:
            # what optuna-dashboard shows instead of "Objective 0"
            study.set_metric_names([_METRIC_NAMES[o] for o in sf.objectives])
        study.set_user_attr("data_spec", prep.data_spec.model_dump(mode="json"))
        study.set_user_attr("input_size", list(prep.input_size))
    if (enqueue_baseline or stage_index) and (fresh or study.user_attrs.get("seeding") == "pending"):
        _enqueue_start(study, prep, start, stage_index, portfolio=enqueue_baseline and stage_index is None)
    # a search killed between the baseline's end and the probe's enqueue
    enqueue_seed_probe(study, sf, sf.stages[0].n_trials if sf.stages else sf.budget.n_trials)
    return study


def enqueue_seed_probe(study: optuna.Study, sf: StudyFile, target: int) -> None:
    """Enqueue the seed probe once the baseline has finished: its params again, with another seed
    (trial_seed follows the trial number), which measures the noise the incumbent rule needs.

    Only then are all its params known: a baseline may list a few, and the sampler draws the rest.
    Once per search (the flat study, or stage 0); single objective; ``selection.incumbent``; not
    when the trials already started or queued fill the study's ``target``: it could never run.
    """
    if not sf.selection.incumbent or sf.multi_objective or \
            study.study_name != stage_study_name(sf, 0 if sf.stages else None):
        return
    trials = study.get_trials(deepcopy=False)
    if any(t.user_attrs.get(SEED_PROBE) for t in trials):
        return
    base = next((t for t in trials if t.user_attrs.get("baseline") and t.state in FINISHED), None)
    if base is not None and base.user_attrs.get("search_skipped"):
        return  # no search follows: there is no incumbent to defend
    taken = sum(t.state in (*FINISHED, TrialState.RUNNING, TrialState.WAITING) for t in trials)
    if base is not None and taken < target:
        study.enqueue_trial(base.params, user_attrs={SEED_PROBE: True})


def _probe_after_baseline(sf: StudyFile, target: int) -> Callable[[optuna.Study, FrozenTrial], None]:
    def after(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.user_attrs.get("baseline") and trial.state in FINISHED:
            enqueue_seed_probe(study, sf, target)
    return after


def _enqueue_start(study: optuna.Study, prep: Prepared, start: dict, stage_index: int | None, *,
                   portfolio: bool) -> None:
    """Enqueue the first trial (and the portfolio's), those not enqueued yet: "seeding" stays
    "pending" until all are, so a search killed in between completes them when it resumes."""
    study.set_user_attr("seeding", "pending")
    queued = [t.user_attrs for t in study.get_trials(deepcopy=False)]
    if not any("baseline" in attrs for attrs in queued):
        study.enqueue_trial(start, user_attrs={"baseline": stage_index in (None, 0)})
    for i, recipe in enumerate(prep.space.checked_portfolio() if portfolio else []):
        if not any(attrs.get("portfolio") == i for attrs in queued):
            study.enqueue_trial(recipe, user_attrs={"portfolio": i})
    study.set_user_attr("seeding", "done")


def run_search(prep: Prepared, study: optuna.Study | None = None, *, events: TrialEvents | None = None,
               callbacks: list | None = None, completed_hooks: list[CompletedHook] | None = None,
               target: int | None = None, timeout_s: float | None = None, poll_s: float = 2.0,
               stop_when: Callable[[optuna.Study], str | None] | None = None,
               baseline_gate: Callable[[float], str | None] | None = None) -> optuna.Study:
    """Run trials until the study holds ``budget.n_trials`` finished trials or its search time is
    spent, across restarts and workers.

    Trials are started one ``optimize`` call at a time (Optuna's heartbeat only runs under
    ``optimize``) behind a budget gate: while running trials could already complete the total,
    this worker starts nothing and waits, so that a study never ends with more than its total;
    if one of those trials dies, its retry is picked up here. ``stop_when`` may end the search
    before a trial starts by returning the reason (`automl run`'s budget gate); ``baseline_gate``
    may end the baseline after its first epoch (:class:`automl.trial.length.GatedBaseline`).

    ``callbacks`` (Optuna's ``(study, trial)``) see every trial that ends: in ``optimize``, and
    those that recovery ends (a dead worker's, an interrupted one). ``completed_hooks`` run on a
    trial that trained to completion, while its model is in memory. The morning view
    (``automl.view.dashboard_hooks.morning_view``) comes in through both; the search never
    imports it.
    """
    sf = prep.sf
    study = study or setup_study(prep)
    target = target or sf.budget.n_trials
    settings = TrialSettings(epochs=sf.budget.trial_epochs, eval_subset=sf.eval.subset,
                             eval_batch_size=sf.eval.batch_size, num_workers=sf.num_workers,
                             time_limit_s=sf.budget.trial_time_limit, base_seed=sf.sampler.seed,
                             total_trials=target, objectives=tuple(sf.objectives),
                             max_latency_ms=sf.constraints.max_latency_ms, max_params_m=sf.constraints.max_params_m,
                             eval_epochs=pruner_epochs(sf), schedule_epochs=sf.budget.trial_schedule_epochs,
                             equal_time=sf.budget.equal == "time", baseline_gate=baseline_gate)
    best = BestTrialCheckpoint(sf.run_dir)
    starting = TrialStart(start_lock(prep.storage_url))
    objective = Objective(prep.space, prep.data, prep.data_spec, prep.runtime, settings, prep.input_size, events,
                          completed_hooks=[best, *(completed_hooks or [])],
                          latency_cache=latency_cache(sf), on_owned=starting.owned)
    streak = FailureStreak(sf.budget.max_consecutive_failures)
    timeout = timeout_s if timeout_s is not None else sf.budget.timeout
    log.info("study %s on %s", study.study_name, mask_url(prep.storage_url))
    while True:
        interrupts.raise_if_requested()  # a SIGTERM that something swallowed still stops the search
        recover(study, sf.storage.max_retries, start_lock=starting.lock_path,
                ownerless_grace_s=sf.storage.grace_period, callbacks=callbacks or ())
        best.promote(study._storage)
        state = budget_state(study, target, timeout)
        if state.complete or state.out_of_time:
            break
        if sf.budget.patience is not None and trials_since_best(study) >= sf.budget.patience:
            log.info("search stopped: %d trials in a row without a new best (budget.patience)",
                     trials_since_best(study))
            break
        reason = stop_when(study) if stop_when is not None else None
        if reason:
            log.info(reason)
            break
        if state.fully_booked:
            time.sleep(poll_s)  # other workers' trials may finish the study, or die and be retried
            continue
        with starting():
            study.optimize(objective, n_trials=1, catch=(Exception,),
                           callbacks=[_told, best.after_trial, streak, _probe_after_baseline(sf, target),
                                      *(callbacks or [])])
        if streak.tripped:
            raise AutoMLError(f"stopped after {streak.streak} failed trials in a row; see each trial's "
                              "stop_reason (`automl status`) and fix the cause before resuming")
    return study


def _told(study: optuna.Study, trial: FrozenTrial) -> None:
    faults.point("told")  # the trial is told; the callbacks after this one (best weights, notes) have not run


def run_all(prep: Prepared, *, worker_index: int = 0, enqueue_baseline: bool = True,
            on_study: Callable[[optuna.Study, int], None] | None = None, timeout_s: float | None = None,
            **search_kwargs) -> optuna.Study:
    """The whole search: one study, or each stage in turn. Returns the study the final stage uses.

    ``timeout_s`` (default ``budget.timeout``) caps the search time; a staged search shares it
    between stages in proportion to their trial budgets (a stage's own ``timeout`` applies if
    smaller).
    """
    sf = prep.sf
    if not sf.stages:
        study = setup_study(prep, worker_index=worker_index, enqueue_baseline=enqueue_baseline)
        if on_study:
            on_study(study, sf.budget.n_trials)
        return run_search(prep, study, timeout_s=timeout_s, **search_kwargs)
    start = None
    # budget.timeout (or timeout_s) is the whole search's time: the stages share it
    budgets = study_budgets(sf, timeout_s)
    for i, stage in enumerate(sf.stages):
        study = setup_study(prep, worker_index=worker_index, enqueue_baseline=enqueue_baseline, stage_index=i,
                            start_params=start)
        if on_study:
            on_study(study, stage.n_trials)
        _, target, limit = budgets[i]
        run_search(prep, study, target=target, timeout_s=limit, **search_kwargs)
        if i + 1 < len(sf.stages):
            winner = selected_or_none(study, sf)
            if winner is None:
                log.warning("stage %s completed no feasible trial; the next stage starts where this one did",
                            stage.name)
            start = winner.params if winner is not None else start
    return study


def final_study(sf: StudyFile, storage_url: str) -> optuna.Study:
    """The study whose selected trial the final stage retrains (the last stage's, if staged)."""
    name = stage_study_name(sf, len(sf.stages) - 1 if sf.stages else None)
    return optuna.load_study(study_name=name, storage=open_storage(storage_url, sf.storage))
