"""Search big, ship small: distil the final stage's retrained model (the teacher) into a student.

In order: the teacher bundle (written by :func:`automl.final.pipeline.run_final` if missing) →
choose the student (:mod:`automl.final.student`) → train it distilled → train it alone (the
epochs the distilled one trained, same recipe and seed, no KD: the comparison that says whether
KD helped) → the student's own
TTA decision, ONNX, INT8 with the accuracy check, holdout scores and latency, exactly as the
final stage does for the teacher → ``bundle/student/`` (a whole bundle) → the teacher/student
table in the top report, ``distill.png``, and the bundle's default model.

Under `automl run --budget` (``until``) the distilled student's run re-plans its epochs to end,
with the student alone's run after it, at the students' deadline: each of its epochs is priced
at its own measured time plus the alone run's (its time less the teacher's clocked forward
passes), and both runs' val passes (:class:`automl.trial.length.FinishBy`).

Both students are kept (``runs/<study>/student_alone_model``, ``student_model``), keyed by their
config, split and the teacher's weights, so that a killed ``automl distill`` keeps the teacher
and every student it finished. Every decision is taken on the selection split; the holdout is
scored once per shipped model, after them.

The default model: the most accurate on val among the teacher's and the distilled student's
default variants that meet ``constraints`` and a ``pareto_pick: best_under_limit`` limit
(latency: the model alone at batch 1, as the search measured it; size: parameters), else the
teacher. A student that KD did not help (distilled no better than alone on val) is never it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

from automl import faults
from automl.atomic import clean_leftovers, library_temp_in, owned_tempdir
from automl.bundle.layout import (
    DISTILL_PNG,
    MANIFEST,
    MODEL_DIR,
    ONNX_FILES,
    REPORT_JSON,
    REPORT_MD,
    STUDENT_DIR,
    Manifest,
)
from automl.bundle.load import load_bundle, read_manifest
from automl.bundle.predictor import Predictor, TorchPredictor
from automl.bundle.variants import ORT_INT8, TORCH_FP32, Variant
from automl.bundle.write import write_bundle
from automl.config import DistillSection, StudyFile
from automl.data.folder import Dataset
from automl.errors import ConfigError
from automl.final.evaluate import evaluate
from automl.final.pipeline import (
    _build_and_score,
    _latencies,
    _latency_time,
    _manifest,
    _report,
    _score_holdout,
    _Scorer,
    _split_notes,
)
from automl.final.plot import plot_distill, plot_final
from automl.final.report import render_markdown
from automl.final.retrain import Retrained, TrainUntil, history_rows, load_retrained, retrain, save_retrained
from automl.final.source import load_existing_study, pick_trial
from automl.final.student import Student, choose_student
from automl.study.runner import load_data
from automl.study.storage import resolve_url
from automl.trial.augment import eval_transform
from automl.trial.checkpoint import load_model
from automl.trial.distill import DistillCriterion, KDSpec
from automl.trial.engine import Runtime
from automl.trial_config import TrialConfig

log = logging.getLogger(__name__)

ALONE_MODEL_DIR = "student_alone_model"
DISTILLED_MODEL_DIR = "student_model"


@dataclass
class DistillResult:
    bundle_dir: Path
    table: dict


def distill_spec(sf: StudyFile, student: str | None) -> DistillSection:
    """``final.distill``, or the defaults around ``--student`` when the study file has none."""
    if sf.final.distill is not None:
        return sf.final.distill
    if student is None:
        raise ConfigError("final.distill is not set in the study file: set it (student, method) or pass "
                          "--student ARCH/ENCODER")
    try:
        return DistillSection(student=student)
    except ValueError as exc:
        raise ConfigError(f"--student: {exc}") from None


def _weights_digest(model_dir: Path) -> str:
    h = hashlib.sha256()
    with open(model_dir / "model.safetensors", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _train_student(sf: StudyFile, cfg: TrialConfig, data: Dataset, runtime: Runtime, folder: str, keyed: dict,
                   name: str, criterion=None, until: TrainUntil | None = None) -> Retrained:
    """A student trained (or the kept one of the same config, split and ``keyed`` items)."""
    fs = sf.final
    kept = load_retrained(sf.run_dir, cfg, fs.trainval, data.record, folder=folder, extra=keyed)
    if kept is not None:
        log.info("reusing the %s in %s", name, sf.run_dir / folder)
        return kept
    t0 = time.monotonic()
    fit = retrain(cfg, data, runtime, train_on_trainval=fs.trainval, eval_subset=sf.eval.subset,
                  eval_points=fs.eval_points, eval_batch_size=sf.eval.batch_size, num_workers=sf.num_workers,
                  criterion=criterion, name=name, until=until)
    trained = Retrained(fit.model.cpu().eval(), history_rows(fit.history), time.monotonic() - t0, str(runtime.device))
    save_retrained(sf.run_dir, cfg, trained, train_on_trainval=fs.trainval, trial_number=-1, data_split=data.record,
                   folder=folder, extra=keyed)
    return trained


def _size_mb(path: Path) -> float:
    return round(path.stat().st_size / 2**20, 2)


def _rows(teacher_report: dict, teacher_dir: Path, student_report: dict, student_dir: Path, alone: dict,
          latency: dict[str, dict], model_only: dict[str, dict]) -> list[dict]:
    """The table: teacher fp32 and INT8, student alone fp32, student distilled fp32 and INT8."""
    def row(name: str, model: str, report: dict, folder: Path, v: Variant, key: str) -> dict | None:
        val = report["evaluation"]["val"].get(v.key)
        if val is None:
            return None
        held = ((report.get("holdout") or {}).get("scores") or {}).get(v.key)
        file = folder / (MODEL_DIR + "/model.safetensors" if v.backend == "torch" else ONNX_FILES[v.precision])
        return {"row": name, "model": model, "variant": v.key, "val_miou": val["miou"],
                "holdout_miou": None if held is None else held["miou"],
                "latency_ms": latency.get(key, {}).get("median_ms"),
                "model_alone_ms": model_only.get(key, {}).get("median_ms"),
                "size_mb": _size_mb(file) if file.is_file() else None,
                "params": report["model"]["params"]}

    t_model = f"{teacher_report['model']['arch']}/{teacher_report['model']['encoder']}"
    s_model = f"{student_report['model']['arch']}/{student_report['model']['encoder']}"
    rows = [row("teacher fp32", t_model, teacher_report, teacher_dir, TORCH_FP32, "teacher_torch_fp32"),
            row("teacher INT8", t_model, teacher_report, teacher_dir, ORT_INT8, "teacher_ort_int8"),
            {"row": "student alone fp32", "model": s_model, "variant": TORCH_FP32.key, **alone,
             "latency_ms": latency.get("alone_torch_fp32", {}).get("median_ms"),
             "model_alone_ms": model_only.get("alone_torch_fp32", {}).get("median_ms"),
             "size_mb": None, "params": student_report["model"]["params"]},
            row("student distilled fp32", s_model, student_report, student_dir, TORCH_FP32, "student_torch_fp32"),
            row("student distilled INT8", s_model, student_report, student_dir, ORT_INT8, "student_ort_int8")]
    return [r for r in rows if r is not None]


def default_model(sf: StudyFile, teacher: dict, student: dict | None) -> tuple[str, str]:
    """("teacher" | "student", why): the rule in the module docstring. ``teacher``/``student``:
    each default variant's val mIoU, model-alone latency and parameters (student None: not a
    candidate)."""
    limits = [(sf.constraints.max_latency_ms, "latency_ms", "ms"), (sf.constraints.max_params_m, "params_m", "M")]
    if sf.pareto_pick.rule == "best_under_limit":
        limits += [(sf.pareto_pick.max_latency_ms, "latency_ms", "ms"), (sf.pareto_pick.max_params_m, "params_m", "M")]
    limits = [(lim, key, unit) for lim, key, unit in limits if lim is not None]

    def meets(c: dict) -> bool:
        return all(c.get(key) is not None and c[key] <= lim for lim, key, _ in limits)

    cands = {"teacher": teacher, **({} if student is None else {"student": student})}
    ok = {name: c for name, c in cands.items() if meets(c)}
    if not ok:
        return "teacher", ("no model meets " + ", ".join(f"{key} ≤ {lim:g} {unit}" for lim, key, unit in limits)
                           + ": the teacher")
    name = max(ok, key=lambda n: ok[n]["val_miou"])
    what = "the most accurate on val" + (" that meets " + ", ".join(f"{key} ≤ {lim:g} {unit}"
                                                                      for lim, key, unit in limits) if limits else "")
    return name, what


def _replace_file(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_distill(sf: StudyFile, *, storage: str | None = None, student: str | None = None,
                data: Dataset | None = None, out: Path | None = None, until: TrainUntil | None = None) -> DistillResult:
    """Distil the study's retrained model into a student and add it to the bundle (``out``,
    default ``runs/<study>/bundle``); ``student``: ``ARCH/ENCODER`` instead of final.distill's;
    ``until``: `automl run`'s time for both students (``finish_by``: their training; ``done_by``:
    the student's bundle written)."""
    from automl.final.pipeline import run_final

    spec = distill_spec(sf, student)
    kd = KDSpec.of(spec.method, spec.weight, spec.temperature)
    clean_leftovers(sf.run_dir)
    url = resolve_url(sf, storage)
    study = load_existing_study(sf, url)
    bundle_dir = Path(out) if out is not None else sf.run_dir / "bundle"
    data = data if data is not None else load_data(sf)
    if not (bundle_dir / MANIFEST).is_file():
        log.info("no teacher bundle in %s: the final stage writes it first", bundle_dir)
        run_final(sf, storage=storage, out=bundle_dir, data=data, reuse_model=True, distill=False)
    manifest = read_manifest(bundle_dir)
    teacher_model, teacher_cfg, _ = load_model(bundle_dir / MODEL_DIR)
    teacher_report = json.loads((bundle_dir / REPORT_JSON).read_text())
    chosen = choose_student(spec, study, teacher_cfg, tuple(manifest.input_size), override=student)
    log.info("student: %s (%s); KD %s, weight %g, temperature %g", chosen.as_dict()["model"], chosen.rule,
             kd.method, kd.weight, kd.temperature)
    runtime = Runtime.resolve(sf.device)
    teacher_id = {"teacher_weights": _weights_digest(bundle_dir / MODEL_DIR)}
    crit = DistillCriterion(chosen.cfg, teacher_model, teacher_cfg.data.pad_divisor, kd, runtime.device)

    def with_alone(distilled_s: float) -> float:  # an epoch of both runs
        return distilled_s + max(0.0, distilled_s - crit.teacher_epoch_s())

    distilled = _train_student(sf, chosen.cfg, data, runtime, DISTILLED_MODEL_DIR,
                               {"kind": "distilled", "kd": kd.as_dict(), **teacher_id},
                               "student (distilled) retrain", criterion=crit,
                               until=None if until is None else dataclasses.replace(until, epoch_cost=with_alone,
                                                                                    runs=2))
    teacher_model.cpu()
    faults.point("student_distilled")
    if distilled.history:  # re-planned to its time: the student alone trains the same epochs
        chosen = dataclasses.replace(chosen, cfg=chosen.cfg.with_changes(epochs=distilled.history[-1]["epoch"]))
    alone = _train_student(sf, chosen.cfg, data, runtime, ALONE_MODEL_DIR, {"kind": "alone"},
                           "student (alone) retrain")
    faults.point("student_alone")
    table = _ship(sf, study, chosen, kd, data, bundle_dir, manifest, teacher_report, alone, distilled, until)
    return DistillResult(bundle_dir, table)


def _ship(sf: StudyFile, study: optuna.Study, chosen: Student, kd: KDSpec, data: Dataset, bundle_dir: Path,
          manifest: Manifest, teacher_report: dict, alone: Retrained, distilled: Retrained,
          until: TrainUntil | None) -> dict:
    cfg = chosen.cfg
    input_size = tuple(manifest.input_size)
    notes = [*_split_notes(sf, data), f"distilled from the teacher in ../ ({teacher_report['model']['arch']}/"
             f"{teacher_report['model']['encoder']}): {kd.method}, weight {kd.weight:g}, temperature "
             f"{kd.temperature:g}; student chosen by {chosen.rule}"]
    trial = pick_trial(study, sf)
    student_dir = bundle_dir / STUDENT_DIR
    n_cls, ignore = cfg.data.num_classes, cfg.data.ignore_index
    alone_pred = TorchPredictor(alone.model, eval_transform(cfg.data), n_cls)
    alone_val = evaluate(alone_pred, data.val, n_cls, ignore).miou
    with owned_tempdir(sf.run_dir, "distill-work") as tmp, library_temp_in(tmp):
        val = _Scorer(data.val, cfg)
        v = _build_and_score(distilled.model, cfg, data, sf, input_size, tmp, val, notes,
                             None if until is None else until.done_by)
        student_manifest = _manifest(sf, cfg, input_size, v)
        holdout = _score_holdout(v, data.holdout, cfg)
        alone_held = None if data.holdout is None else evaluate(alone_pred, data.holdout, n_cls, ignore).miou
        # teacher and students timed at the same moment, so that the speed-ups compare
        timed: dict[str, Predictor] = {"alone_torch_fp32": alone_pred}
        timed["teacher_torch_fp32"] = load_bundle(bundle_dir, backend="torch", tta=False, model="teacher")
        if manifest.onnx is not None and not manifest.int8_accepted:  # the teacher's default is ORT fp32
            timed["teacher_ort_fp32"] = load_bundle(bundle_dir, backend="onnxruntime", precision="fp32", tta=False,
                                                    model="teacher", threads=sf.final.latency_threads)
        if manifest.int8_file:
            timed["teacher_ort_int8"] = load_bundle(bundle_dir, backend="onnxruntime", precision="int8", tta=False,
                                                    model="teacher", threads=sf.final.latency_threads)
        keys = {_Key(f"student_{k.key}", k.tta): k for k in v.timed}
        timed_keys = {**{key: v.timed[k] for key, k in keys.items()},
                      **{_Key(name): p for name, p in timed.items() if not name.startswith("student_")}}
        lat_all, alone_all = _latencies(timed_keys, data.val.images[0], sf.final.latency_runs,
                                        sf.final.latency_threads, _latency_time(until))
        latency = {k.name: x.as_dict() for k, x in lat_all.items()}
        model_only = {k.name: x.as_dict() for k, x in alone_all.items()}
        student_lat = {keys[k]: x for k, x in lat_all.items() if k in keys}
        student_only = {keys[k]: x for k, x in alone_all.items() if k in keys}
        report = _report(sf, study, trial, cfg, distilled, v, val, holdout, student_lat, student_only, data, notes)
        report["distill"] = {"role": "student", "kd": kd.as_dict(), "student": chosen.as_dict()}
        write_bundle(student_dir, model=distilled.model, cfg=cfg, manifest=student_manifest, report=report,
                     render_md=render_markdown, onnx_fp32=None if v.export is None else v.export.path,
                     onnx_int8=None if v.int8 is None else v.int8.path,
                     model_extra={"study_name": sf.name, "stage": "distilled_student", "kd": kd.as_dict()},
                     render_png=plot_final)
    faults.point("student_written")
    student_report = json.loads((student_dir / REPORT_JSON).read_text())
    rows = _rows(teacher_report, bundle_dir, student_report, student_dir,
                 {"val_miou": round(alone_val, 6), "holdout_miou": None if alone_held is None else round(alone_held, 6)},
                 latency, model_only)
    gain = student_report["evaluation"]["val"][TORCH_FP32.key]["miou"] - alone_val
    helped = gain > 0
    t_def, s_def = teacher_report["default_predictor"], student_report["default_predictor"]

    def candidate(report: dict, prefix: str, d: dict) -> dict:
        key = Variant(d["backend"], d["precision"], d["tta"]).key
        return {"val_miou": report["evaluation"]["val"][key]["miou"],
                "latency_ms": model_only.get(f"{prefix}_{Variant(d['backend'], d['precision']).key}", {}).get(
                    "median_ms"),
                "params_m": report["model"]["params"] / 1e6}

    chosen_model, why = default_model(sf, candidate(teacher_report, "teacher", t_def),
                                      candidate(student_report, "student", s_def) if helped else None)
    if not helped:
        why += "; KD did not help (the distilled student is no better than the student alone on val)"
    table = {"kd": kd.as_dict(), "student": chosen.as_dict(), "rows": rows,
             "kd_gain_val": round(gain, 6), "kd_helped": helped, "default_model": chosen_model, "default_why": why,
             "epochs": cfg.epochs, "latency_threads": sf.final.latency_threads,
             "latency_runs": sf.final.latency_runs,
             "teacher_epochs": teacher_report["retrain"]["epochs"]}
    _update_top(sf, study, bundle_dir, manifest, teacher_report, table)
    return table


@dataclass(frozen=True)
class _Key:
    """A latency key that is no bundle variant (teacher, student alone): ``_latencies`` reads only
    ``tta`` and ``label``."""

    name: str
    tta: bool = False

    @property
    def label(self) -> str:
        return self.name


def _update_top(sf: StudyFile, study: optuna.Study, bundle_dir: Path, manifest: Manifest, report: dict,
                table: dict) -> None:
    """The teacher's bundle learns of its student: the table in report.json/md, distill.png, the
    manifest's student folder and default model (written last: a bundle killed in between still
    loads its teacher)."""
    try:
        plot_distill(table, bundle_dir / DISTILL_PNG)
        table["figure"] = DISTILL_PNG
    except Exception as exc:  # noqa: BLE001 - a figure is no reason to lose the student
        log.warning("%s not written: %s: %s", DISTILL_PNG, type(exc).__name__, exc)
    report = {**report, "distill": table}
    _replace_file(bundle_dir / REPORT_JSON, json.dumps(report, indent=2, allow_nan=False))
    _replace_file(bundle_dir / REPORT_MD, render_markdown(report))
    updated = manifest.model_copy(update={"student": STUDENT_DIR, "default_model": table["default_model"]})
    _replace_file(bundle_dir / MANIFEST, updated.model_dump_json(indent=2))
    log.info("student added to %s; default model: %s (%s)", bundle_dir, table["default_model"], table["default_why"])
    from automl.study.artifacts import attach_file

    try:
        for name in (REPORT_MD, DISTILL_PNG):
            if (bundle_dir / name).is_file():
                attach_file(sf.run_dir, study, bundle_dir / name)
        study.set_user_attr("distill", {k: table[k] for k in ("kd_gain_val", "kd_helped", "default_model")}
                            | {"rows": [{k: r[k] for k in ("row", "val_miou", "holdout_miou", "latency_ms", "size_mb")}
                                        for r in table["rows"]]})
    except Exception as exc:  # noqa: BLE001 - the bundle stands even if the storage is gone
        log.warning("could not attach the distillation report to the study: %s", exc)
