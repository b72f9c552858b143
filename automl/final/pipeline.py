"""The final stage, in order: retrain the chosen trial → score fp32 → decide on TTA → export
ONNX → INT8 with fallbacks → score the holdout → latency → report → bundle (+ report attached
to the study).

Latency comes last because it is the only elastic step: under `automl run` it gets the time left
before the run's end (less :data:`automl.final.latency.BUNDLE_WRITE_S`), and times fewer runs per variant when that is
short (never fewer than :data:`automl.final.latency.MIN_RUNS`); the report gives each variant's
runs. The shipped variant is timed first, whatever the time; another only if its fewest runs
fit in what is left (the report lists those not timed).

Every score comes from the bundle's own predictors (:mod:`automl.bundle.predictor`), so the
report describes exactly what the bundle ships. Every decision (TTA, INT8, the default) is
taken on the selection split (``data.val``). The untouched holdout (:mod:`automl.data.split`)
is read once, in :func:`_score_holdout`, after the last decision: each variant the bundle ships
is scored on it once, and nothing is decided from those scores.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterable

import numpy as np
import optuna
from optuna.trial import FrozenTrial
from torch import nn

from automl import faults
from automl.atomic import clean_leftovers, library_temp_in, owned_tempdir
from automl.bundle.layout import Manifest, OnnxInfo
from automl.bundle.predictor import OnnxPredictor, Predictor, TorchPredictor
from automl.bundle.tta import NO_TTA, TTASpec
from automl.bundle.variants import ORT_FP32, ORT_INT8, TORCH_FP32, VARIANTS, Variant
from automl.bundle.write import write_bundle
from automl.config import StudyFile
from automl.data.folder import Dataset, Split, padded_size
from automl.data.split import HOLDOUT_NOTE, RECORD_ATTR, check_same_split
from automl.final.evaluate import Scores, evaluate
from automl.final.export import ExportError, OnnxExport, export_onnx
from automl.final.extras import ALL, Extras
from automl.final.latency import BUNDLE_WRITE_S, WARMUP_RUNS, Latency, measure_all
from automl.final.plot import plot_final
from automl.final.quantize import Int8Outcome, quantize_with_fallbacks
from automl.final.report import render_markdown
from automl.final.retrain import (
    FINAL_MODEL_DIR,
    Retrained,
    TrainUntil,
    history_rows,
    load_retrained,
    retrain,
    save_retrained,
)
from automl.final.source import (
    final_config,
    load_existing_study,
    pick_trial,
    search_summary,
)
from automl.final.tta import TTADecision, decide_tta
from automl.study.runner import load_data
from automl.study.storage import resolve_url
from automl.trial.augment import eval_transform
from automl.trial.ema import WeightAverage
from automl.trial.engine import Runtime, subset_indices
from automl.trial.latency import cpu_model_name, torch_threads
from automl.trial.model import count_params
from automl.trial_config import TrialConfig

log = logging.getLogger(__name__)


@dataclass
class FinalResult:
    bundle_dir: Path
    manifest: Manifest
    report: dict


@dataclass
class _Variants:
    """The predictors built from the retrained model, and the decisions taken on the way."""

    tta: TTADecision
    timed: dict[Variant, Predictor] = field(default_factory=dict)  # for latency
    export: OnnxExport | None = None
    int8: Int8Outcome | None = None
    int8_error: str | None = None
    int8_left_out: str | None = None  # why a short `automl run` left INT8 out (automl.final.extras)

    @property
    def int8_accepted(self) -> bool:
        return self.int8 is not None and self.int8.accepted

    def default(self) -> Variant:
        """The variant the bundle loads by default."""
        plain = TORCH_FP32 if self.export is None else ORT_INT8 if self.int8_accepted else ORT_FP32
        return plain.with_tta(self.tta.kept)


class _Scorer:
    """Scores predictors on one split, remembering results by variant."""

    def __init__(self, split: Split, cfg: TrialConfig):
        self.split, self.cfg = split, cfg
        self.scores: dict[Variant, Scores] = {}
        self.image_s: dict[Variant, float] = {}  # one image's predict(), as this pass took it

    def __call__(self, variant: Variant, predictor: Predictor) -> Scores:
        t0 = time.perf_counter()
        s = evaluate(predictor, self.split, self.cfg.data.num_classes, self.cfg.data.ignore_index)
        self.image_s[variant] = (time.perf_counter() - t0) / max(1, len(self.split))
        self.scores[variant] = s
        log.info("%s %s: mIoU %.4f", self.split.name, variant.label, s.miou)
        return s


def _retrained(sf: StudyFile, cfg: TrialConfig, trial_number: int, data: Dataset, reuse: bool,
               until: TrainUntil | None = None) -> Retrained:
    fs = sf.final
    kept = load_retrained(sf.run_dir, cfg, fs.trainval, data.record) if reuse else None
    if kept is not None:
        log.info("reusing the retrained model in %s (same config and split)", sf.run_dir / FINAL_MODEL_DIR)
        return kept
    t0 = time.monotonic()
    runtime = Runtime.resolve(sf.device)
    average = WeightAverage(fs.ema.horizon) if fs.ema.enabled else None
    fit_res = retrain(cfg, data, runtime, train_on_trainval=fs.trainval,
                      eval_subset=sf.eval.subset, eval_points=fs.eval_points, eval_batch_size=sf.eval.batch_size,
                      num_workers=sf.num_workers, until=until, average=average)
    model, decision = fit_res.model.cpu().eval(), None
    if average is not None:
        model, decision = _average_or_trained(model, average, data.val, cfg, fs.ema.min_gain)
    trained = Retrained(model, history_rows(fit_res.history), time.monotonic() - t0, str(runtime.device),
                        weight_average=decision)
    save_retrained(sf.run_dir, cfg, trained, train_on_trainval=fs.trainval, trial_number=trial_number,
                   data_split=data.record)
    return trained


def _average_or_trained(trained: nn.Module, average: WeightAverage, val: Split, cfg: TrialConfig,
                        min_gain: float) -> tuple[nn.Module, dict]:
    """The weight average when it scores at least ``min_gain`` above the trained weights on the
    selection split, else the trained weights; and the decision with its figures."""
    preprocess, n_cls, ignore = eval_transform(cfg.data), cfg.data.num_classes, cfg.data.ignore_index
    averaged = average.model.cpu().eval()
    plain = evaluate(TorchPredictor(trained, preprocess, n_cls), val, n_cls, ignore).miou
    smooth = evaluate(TorchPredictor(averaged, preprocess, n_cls), val, n_cls, ignore).miou
    kept = smooth - plain >= min_gain
    log.info("weight average (EMA over the last %.0f%% of steps, decay %.5f): val mIoU %.4f vs %.4f trained: %s",
             100 * average.horizon, average.decay, smooth, plain, "kept" if kept else "dropped")
    return (averaged if kept else trained), {
        "horizon": average.horizon, "decay": round(average.decay, 6), "min_gain": min_gain,
        "val_miou_average": round(smooth, 6), "val_miou_trained": round(plain, 6), "kept": kept}


def _calibration_inputs(predictor: Predictor, split: Split, n: int) -> list[np.ndarray]:
    """Training images preprocessed exactly like evaluation (normalise + pad), evenly spaced."""
    idx = subset_indices(len(split), min(1.0, n / len(split)))
    return [predictor.model_input(split.images[i]) for i in idx]


# Under `automl run`, INT8 fallback attempts may start until this share of the time left after
# the export has passed: the rest is for the holdout, latency and the bundle.
INT8_SHARE = 0.5


def _int8(fp32: OnnxPredictor, data: Dataset, sf: StudyFile, workdir: Path, val: _Scorer,
          threads: int, done_by: float | None = None) -> Int8Outcome:
    opts = sf.final.int8
    calib = _calibration_inputs(fp32, data.train, opts.calibration_images)
    log.info("INT8: calibrating on %d training images, limit %.4f mIoU drop", len(calib), opts.max_drop)
    by_path: dict[Path, Scores] = {}

    def score(path: Path) -> float:
        candidate = OnnxPredictor(path, fp32.preprocess, fp32.num_classes, precision="int8", threads=threads)
        by_path[path] = evaluate(candidate, val.split, val.cfg.data.num_classes, val.cfg.data.ignore_index)
        return by_path[path].miou

    now = time.monotonic()
    deadline = None if done_by is None else now + INT8_SHARE * max(0.0, done_by - now)
    outcome = quantize_with_fallbacks(fp32.path, workdir, calib, score, val.scores[ORT_FP32].miou, opts.max_drop,
                                      deadline=deadline)
    if outcome.path is not None:
        val.scores[ORT_INT8] = by_path[outcome.path]
    return outcome


def _build_and_score(model: nn.Module, cfg: TrialConfig, data: Dataset, sf: StudyFile, input_size: tuple[int, int],
                     work: Path, val: _Scorer, notes: list[str], done_by: float | None = None,
                     extras: Extras = ALL) -> _Variants:
    """torch fp32 → TTA decision → ONNX fp32 → INT8 (when ``extras.int8``), each scored on val."""
    fs, n_cls, threads = sf.final, cfg.data.num_classes, sf.final.latency_threads
    preprocess = eval_transform(cfg.data)
    torch_pred = TorchPredictor(model, preprocess, n_cls)
    val(TORCH_FP32, torch_pred)
    spec = TTASpec(hflip=fs.tta.hflip, vflip=fs.tta.vflip, scales=tuple(fs.tta.scales))
    v = _Variants(decide_tta(torch_pred, data.val, val.scores[TORCH_FP32], spec, fs.tta.min_gain, n_cls,
                             cfg.data.ignore_index))
    if v.tta.scores is not None:
        val.scores[TORCH_FP32.with_tta()] = v.tta.scores

    def add(variant: Variant, predictor: Predictor) -> None:
        v.timed[variant] = predictor
        if v.tta.evaluated:
            v.timed[variant.with_tta()] = predictor.with_tta(v.tta.spec)

    add(TORCH_FP32, torch_pred)
    try:
        v.export = export_onnx(model, work / "model.onnx", input_size, cfg.data.pad_divisor)
    except ExportError as exc:
        notes.append(str(exc))
        log.error("%s", exc)
        return v
    faults.point("exported")
    ort_fp32 = OnnxPredictor(v.export.path, preprocess, n_cls, threads=threads)
    val(ORT_FP32, ort_fp32)
    add(ORT_FP32, ort_fp32)
    if not fs.int8.enabled:
        return v
    if not extras.int8:
        v.int8_left_out = extras.left_out("int8")
        return v
    try:
        v.int8 = _int8(ort_fp32, data, sf, work / "int8", val, threads, done_by)
    except Exception as exc:  # noqa: BLE001 - ship fp32 rather than lose the retrain
        v.int8_error = f"INT8 quantization failed: {type(exc).__name__}: {exc}"
        notes.append(v.int8_error)
        log.error("%s", v.int8_error)
    faults.point("quantized")
    if v.int8 is not None and v.int8.path is not None:
        add(ORT_INT8, OnnxPredictor(v.int8.path, preprocess, n_cls, precision="int8", threads=threads))
    for variant in VAL_TTA:
        if v.tta.evaluated and variant.with_tta() in v.timed and variant.with_tta() not in val.scores:
            val(variant.with_tta(), v.timed[variant.with_tta()])
    return v


# The variants scored with TTA on val: torch (the TTA decision) and INT8 (the default when it passes,
# so its TTA score is the shipped one). ORT fp32 computes what torch does: its TTA score would repeat
# torch's for a pass per view.
VAL_TTA = (TORCH_FP32, ORT_INT8)


def holdout_variants(default: Variant, timed: Iterable[Variant] = VARIANTS, references: bool = True) -> list[Variant]:
    """What the holdout scores, of ``timed``: the default and, with ``references``, the same
    without TTA (what TTA gives) and the torch fp32 model (the reference INT8 is judged against).
    ORT fp32 computes what torch does, and its val score already checked the export; another
    variant ships as an option, its val score in the report."""
    wanted = {default, default.with_tta(False), TORCH_FP32} if references else {default}
    return [k for k in timed if k in wanted]


def _score_holdout(v: _Variants, holdout: Split | None, cfg: TrialConfig,
                   references: bool = True) -> dict[Variant, Scores] | None:
    """The shipped variants (:func:`holdout_variants`), scored once on the untouched holdout;
    called after every decision (TTA, INT8, the default), and the only place the holdout is read."""
    if holdout is None:
        return None
    keys = holdout_variants(v.default(), v.timed, references)
    log.info("%s: %d variants on %d images", HOLDOUT_NOTE, len(keys), len(holdout))
    scorer = _Scorer(holdout, cfg)
    for key in keys:
        scorer(key, v.timed[key])
    return scorer.scores


def _latencies(predictors: dict[Variant, Predictor], image: np.ndarray, runs: int, threads: int,
               max_s: float | None = None, first: Collection[Variant] | None = None,
               call_s: dict[Variant, float] | None = None) -> tuple[dict[Variant, Latency], dict[Variant, Latency]]:
    """End-to-end ``predict(image)`` per variant, and the model alone (preprocessed input in,
    logits out) per variant without TTA: the gap is the pre/post-processing cost. ``max_s``: the
    time for all of it (each timing gets an even share of what is left).

    ``first`` (default: every variant) is timed first and whatever the time; with ``max_s``, each
    other variant only if its fewest runs fit in the time left, at ``call_s`` (a call's expected
    seconds) per call: a short budget times what ships, not every alternative."""
    first = list(predictors) if first is None else [k for k in predictors if k in first]
    order = [*first, *(k for k in predictors if k not in first)]
    timings: dict[tuple[Variant, bool], Callable[[], object]] = {}
    for k in order:
        p = predictors[k]
        timings[(k, False)] = lambda p=p: p.predict(image)
        if not k.tta:
            timings[(k, True)] = lambda p=p, x=p.model_input(image): p.logits(x)
    optional = {t: (call_s or {}).get(t[0], 0.0) for t in timings if t[0] not in first}
    log.info("latency: %d variants x %d runs, threads %d%s", len(predictors), runs, threads,
             "" if max_s is None else f", within {max_s:.0f} s (the run's budget)")
    with torch_threads(threads):
        got = measure_all(timings, runs=runs, warmup=WARMUP_RUNS, max_s=max_s, optional=optional)
    # in the predictors' order (the report's), not the order timed
    out = {k: got[(k, False)] for k in predictors if (k, False) in got}
    model_only = {k: got[(k, True)] for k in predictors if (k, True) in got}
    for key, lat in out.items():
        alone = f", model alone {model_only[key].median_ms:.2f}" if key in model_only else ""
        log.info("latency %s: %.2f ms (p10 %.2f, p90 %.2f%s)", key.label, lat.median_ms, lat.p10_ms,
                 lat.p90_ms, alone)
    skipped = [k.label for k in predictors if k not in out]
    if skipped:
        log.info("latency not timed, to end within the run's budget: %s", ", ".join(skipped))
    return out, model_only


def _call_seconds(v: _Variants, val: _Scorer) -> dict[Variant, float]:
    """A latency call's expected seconds per timed variant: its val pass per image; a TTA variant
    scored by no pass costs its plain variant's times its views."""
    views = len(v.tta.spec.views())
    return {k: val.image_s.get(k, val.image_s.get(k.with_tta(False), 0.0) * (views if k.tta else 1))
            for k in v.timed}


def _shipped_first(v: _Variants) -> list[Variant]:
    """The variants timed whatever the time: the default and, when it has TTA, the same without
    (what TTA costs)."""
    default = v.default()
    return [default, default.with_tta(False)] if default.tta else [default]


def run_final(sf: StudyFile, *, storage: str | None = None, out: Path | None = None, epochs: int | None = None,
              trial_number: int | None = None, reuse_model: bool = False, data: Dataset | None = None,
              until: TrainUntil | None = None, distill: bool = True, extras: Extras = ALL) -> FinalResult:
    """Retrain the best (or the given) trial of the study and write the bundle; then, when
    ``final.distill`` is set (and ``distill``), distil it into a student (:mod:`automl.final.distill`).

    ``out`` defaults to ``runs/<study>/bundle``; ``epochs`` overrides ``final.epochs``;
    ``reuse_model`` skips the retrain when ``runs/<study>/final_model`` holds one of the same
    config and split (kept by every run, so a failure after the retrain costs no retrain);
    ``data``: the dataset the search already decoded in this process (else it is loaded);
    ``until``: `automl run`'s time for the retrain, which re-plans ``epochs`` to fill it;
    ``extras``: the work after the retrain a short `automl run` leaves out (:mod:`automl.final.extras`).
    """
    t_start = time.monotonic()
    clean_leftovers(sf.run_dir)  # what a killed final (or search) left behind
    study = load_existing_study(sf, resolve_url(sf, storage))
    trial = pick_trial(study, sf, trial_number)
    cfg = final_config(trial, epochs or sf.final.epochs)
    data = data if data is not None else load_data(sf)
    if study.user_attrs.get(RECORD_ATTR) is not None:  # the search selected on this split, not another
        check_same_split(study.user_attrs[RECORD_ATTR], data.record, study.study_name)
    input_size = padded_size(data.max_size(), cfg.data.pad_divisor)
    notes = [*_split_notes(sf, data), *extras.notes(), *_add_later(extras, cfg, sf)]
    trained = _retrained(sf, cfg, trial.number, data, reuse_model, until)
    if trained.history:  # a retrain re-planned to its time trained another count
        cfg = cfg.with_changes(epochs=trained.history[-1]["epoch"])
    faults.point("retrained")
    val = _Scorer(data.val, cfg)
    bundle_dir = Path(out) if out is not None else sf.run_dir / "bundle"
    # ONNX files (tens of MB) are written in the run folder: a killed final's are removed by the next run
    with owned_tempdir(sf.run_dir, "final-work") as tmp, library_temp_in(tmp):
        v = _build_and_score(trained.model, cfg, data, sf, input_size, tmp, val, notes,
                             None if until is None else until.done_by, extras)
        manifest = _manifest(sf, cfg, input_size, v)
        holdout = _score_holdout(v, data.holdout, cfg, extras.holdout_references)  # every decision is taken
        latency, model_only = _latencies(v.timed, data.val.images[0], sf.final.latency_runs,
                                         sf.final.latency_threads, _latency_time(until), _shipped_first(v),
                                         _call_seconds(v, val))
        report = _report(sf, study, trial, cfg, trained, v, val, holdout, latency, model_only, data, notes)
        report["extras"] = extras.as_dict()
        report["wall_s"] = round(time.monotonic() - t_start, 1)
        report = write_bundle(bundle_dir, model=trained.model, cfg=cfg, manifest=manifest, report=report,
                              render_md=render_markdown, onnx_fp32=None if v.export is None else v.export.path,
                              onnx_int8=None if v.int8 is None else v.int8.path,
                              model_extra={"study_name": sf.name, "trial_number": trial.number, "stage": "final",
                                           "value": val.scores[TORCH_FP32].miou},
                              render_png=plot_final)
    log.info("bundle written to %s (default: %s)", bundle_dir, report["default_predictor"]["variant"])
    faults.point("bundle_written")
    _attach(sf, study, bundle_dir, report)
    if distill and sf.final.distill is not None:
        from automl.final.distill import run_distill

        report = {**report, "distill": run_distill(sf, storage=storage, data=data, out=bundle_dir).table}
    return FinalResult(bundle_dir, manifest, report)


def _add_later(extras: Extras, cfg: TrialConfig, sf: StudyFile) -> list[str]:
    """How to add what ``extras`` left out to the same retrained model (kept in the run folder):
    a final of the same config, planned epochs and training split reuses it."""
    if not extras.why:
        return []
    return [f"to add what was left out to this retrained model: `automl final <study file> --reuse-model "
            f"--epochs {cfg.epochs}{' --trainval' if sf.final.trainval else ''}`"]


def _latency_time(until: TrainUntil | None) -> float | None:
    """The time left for latency timing under `automl run`; None: no limit."""
    if until is None or until.done_by is None:
        return None
    return max(0.0, until.done_by - time.monotonic() - BUNDLE_WRITE_S)


def _manifest(sf: StudyFile, cfg: TrialConfig, input_size: tuple[int, int], v: _Variants) -> Manifest:
    default = v.default()
    return Manifest(
        study=sf.name, classes=cfg.data.classes, ignore_index=cfg.data.ignore_index,
        pad_divisor=cfg.data.pad_divisor, input_size=input_size,
        onnx=None if v.export is None else OnnxInfo(exporter=v.export.exporter, dynamic=v.export.dynamic,
                                                    input_size=input_size, opset=v.export.opset),
        int8_file=v.int8 is not None and v.int8.path is not None, int8_accepted=v.int8_accepted,
        int8_method=None if v.int8 is None else v.int8.chosen,
        tta=v.tta.spec if v.tta.evaluated else NO_TTA, tta_kept=v.tta.kept,
        default_backend=default.backend, default_precision=default.precision, label_map=cfg.data.label_map,
    )


def _split_notes(sf: StudyFile, data: Dataset) -> list[str]:
    notes = []
    if sf.final.trainval:
        notes.append("trained on train + the selection split (val): val scores (and the TTA/INT8 decisions made "
                     "on them) are optimistic" + ("; the holdout stayed out" if data.holdout is not None else ""))
    if data.holdout is None:
        notes.append("no untouched holdout (no test/ folder, data.val_fraction unset): every score here is on the "
                     "split the search selected on, and is optimistic")
    return notes


def _report(sf: StudyFile, study: optuna.Study, trial: FrozenTrial, cfg: TrialConfig, trained: Retrained, v: _Variants,
            val: _Scorer, holdout: dict[Variant, Scores] | None, latency: dict[Variant, Latency],
            model_only: dict[Variant, Latency], data: Dataset, notes: list[str]) -> dict:
    default = v.default()
    e = v.export
    return {
        "study": sf.name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "classes": list(cfg.data.classes),
        "label_map": None if cfg.data.label_map is None else cfg.data.label_map.model_dump(mode="json"),
        "default_predictor": {"backend": default.backend, "precision": default.precision, "tta": default.tta,
                              "variant": default.label},
        "search": search_summary(study, sf, trial),
        "retrain": {"config": cfg.summary(), "epochs": cfg.epochs, "seed": cfg.seed, "device": trained.device,
                    "train_on_trainval": sf.final.trainval, "wall_s": round(trained.wall_s, 1),
                    "reused": trained.reused, "history": trained.history, "weight_average": trained.weight_average},
        "model": {"arch": cfg.model.arch, "encoder": cfg.model.encoder, "params": count_params(trained.model),
                  "input_size": list(padded_size(data.max_size(), cfg.data.pad_divisor))},
        "data_split": {**data.record, "holdout": data.sources.get("holdout"),
                       "holdout_images": None if data.holdout is None else len(data.holdout)},
        # the selection split: every decision in this report was taken on these scores
        "evaluation": {"val": {k.key: s.as_dict(cfg.data.classes) for k, s in val.scores.items()}},
        "holdout": None if holdout is None else {
            "what": HOLDOUT_NOTE, "source": data.sources["holdout"], "images": len(data.holdout),
            "scores": {k.key: s.as_dict(cfg.data.classes) for k, s in holdout.items()}},
        "tta": {**v.tta.as_dict(), "latency_cost_ms": _tta_cost(latency)},
        "onnx": None if e is None else {"exporter": e.exporter, "dynamic": e.dynamic, "opset": e.opset,
                                        "max_rel_diff": e.max_abs_diff, "notes": e.notes},
        "int8": _int8_report(sf, v),
        "latency": {"threads": sf.final.latency_threads, "cpu": cpu_model_name(), "runs": sf.final.latency_runs,
                    "runs_note": "each result gives its own runs: fewer under automl run when time was short",
                    "warmup": WARMUP_RUNS, "image_size": list(data.val.images[0].shape[:2]),
                    "what": "predict(image) end to end: preprocess, model, TTA views, argmax",
                    "results": {k.key: lat.as_dict() for k, lat in latency.items()},
                    "model_only": {k.key: lat.as_dict() for k, lat in model_only.items()},
                    "not_timed": [k.label for k in v.timed if k not in latency]},
        "notes": notes,
    }


def _tta_cost(latency: dict[Variant, Latency]) -> dict[str, float]:
    """Per variant without TTA that was also timed with it: what TTA adds, in ms."""
    return {k.key: round(latency[k.with_tta()].median_ms - latency[k].median_ms, 3)
            for k in VARIANTS if not k.tta and k in latency and k.with_tta() in latency}


def _int8_report(sf: StudyFile, v: _Variants) -> dict:
    opts = sf.final.int8
    base = {"enabled": opts.enabled, "max_drop": opts.max_drop, "calibration_images": opts.calibration_images,
            "recipe": "QDQ, uint8 activations, int8 per-channel weights", "error": v.int8_error,
            "left_out": v.int8_left_out}
    q = v.int8
    if q is None:
        return {**base, "accepted": False, "chosen": None, "drop": None, "attempts": []}
    chosen = q.chosen_result
    return {**base, "accepted": q.accepted, "chosen": q.chosen, "pre_process": q.pre_process,
            "reference": "ORT fp32 val mIoU", "reference_miou": round(q.reference_miou, 6),
            "drop": None if chosen is None or chosen.drop is None else round(chosen.drop, 6),
            "attempts": [a.as_dict() for a in q.attempts], "skipped": q.skipped}


def _attach(sf: StudyFile, study: optuna.Study, bundle_dir: Path, report: dict) -> None:
    """Report files as study artifacts (optuna-dashboard) and a short summary as a user attr."""
    from automl.study.artifacts import attach_file

    try:
        for name in ("report.md", "report.json", "report.png"):
            if (bundle_dir / name).is_file():
                attach_file(sf.run_dir, study, bundle_dir / name)
        val, held = report["evaluation"]["val"], report["holdout"]
        study.set_user_attr("final", {
            "bundle": str(bundle_dir), "default": report["default_predictor"]["variant"],
            **{f"val_miou_{k}": v["miou"] for k, v in val.items()},
            **({} if held is None else {"holdout": held["source"], "holdout_images": held["images"],
                                        **{f"holdout_miou_{k}": v["miou"] for k, v in held["scores"].items()}}),
        })
    except Exception as exc:  # noqa: BLE001 - the bundle stands even if the storage is gone
        log.warning("could not attach the report to the study: %s", exc)
