"""Does distillation pay? A teacher and a small student at equal epochs, per seed:

  teacher            the default recipe (the search space's baseline: FPN-resnet18, Adam 2e-4,
                     cosine, CE, 128² crops + flips)
  student alone      --student (default Linknet/tu-mobilenetv3_small_100) with the teacher's recipe
  student + logits   the same, distilled from the teacher: pixel-wise KL (automl.trial.distill)
  student + cwd      the same, channel-wise distillation

all trained for --epochs epochs on train/ less the selection split (data.val_fraction 0.2, the
study file's seeded carve), scored on the selection split ("val") and on the folder's val/, which
nothing here decides from ("holdout"). Then ONNX and INT8 (ONNX Runtime static, the final stage's
recipe with its fallbacks) of the teacher and of the better distilled student, and batch-1
latency of each, model alone (preprocessed input → logits) and predict() end to end.

    python -m benchmarks.distill --data ../shared/datasets/camvid-small --epochs 30 --seeds 2

--student-lr sets the student's LR (default: the teacher's). A seed's teacher is kept in
<workdir>/teacher_<s>/ and reused when the workdir is kept (--keep-teacher): students can be
measured again without training the teacher again.

Seeds run at the same moment, each in its own process pinned to its own core with one thread
(--no-parallel: one after the other, unpinned); a seed's teacher and students share its training
seed. Each seed writes <workdir>/seed_<s>.json; `--table` prints the tables again. On CamVid-small
with the defaults a seed takes about 35 minutes on one core; disk: under 100 MB per seed (ONNX
files in a temporary folder). Use an idle machine: another process on the same cores changes the
latencies and the training times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml
from rich.console import Console
from rich.table import Table

from automl.bundle.predictor import OnnxPredictor, TorchPredictor
from automl.config import load_study_file
from automl.data.folder import padded_size
from automl.final.evaluate import evaluate
from automl.final.export import export_onnx
from automl.final.latency import measure
from automl.final.quantize import quantize_with_fallbacks
from automl.final.retrain import retrain
from automl.study.runner import prepare
from automl.trial.augment import eval_transform
from automl.trial.checkpoint import load_model, save_model
from automl.trial.distill import KD_METHODS, DistillCriterion, KDSpec
from automl.trial.engine import subset_indices
from automl.trial.model import count_params
from benchmarks.common import camvid_data, fresh_workdir, pin

CAMVID = Path("../shared/datasets/camvid-small")
ARMS = ("teacher", "student alone", *(f"student + {m}" for m in KD_METHODS))


def _prepared(args: argparse.Namespace):
    doc = {"name": f"distill_{args.arm_seed}", "data": {**camvid_data(args.data), "val_fraction": 0.2},
           "search_space": "space.yaml", "budget": {"n_trials": 1, "trial_epochs": args.epochs}, "device": "cpu",
           "eval": {"subset": 0.3}}
    path = args.workdir / f"seed_{args.arm_seed}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return prepare(load_study_file(path, runs_root=args.workdir / "runs"))


def _scores(model, cfg, data) -> dict:
    n, ignore = cfg.data.num_classes, cfg.data.ignore_index
    pred = TorchPredictor(model, eval_transform(cfg.data), n)
    return {"val": evaluate(pred, data.val, n, ignore).miou, "holdout": evaluate(pred, data.holdout, n, ignore).miou}


def _int8(name: str, model, cfg, data, input_size, work: Path, args) -> dict:
    """ONNX fp32 and INT8 (the final stage's recipe), their mIoU and batch-1 latency."""
    n, ignore, pre = cfg.data.num_classes, cfg.data.ignore_index, eval_transform(cfg.data)
    fp32 = OnnxPredictor(export_onnx(model, work / f"{name}.onnx", input_size, cfg.data.pad_divisor).path, pre, n,
                         threads=1)
    ref = evaluate(fp32, data.val, n, ignore).miou
    idx = subset_indices(len(data.train), min(1.0, args.calibration / len(data.train)))
    calib = [fp32.model_input(data.train.images[i]) for i in idx]

    def score(path: Path) -> float:
        return evaluate(OnnxPredictor(path, pre, n, precision="int8", threads=1), data.val, n, ignore).miou

    q = quantize_with_fallbacks(fp32.path, work / name, calib, score, ref, 0.005)
    out = {"int8_accepted": q.accepted, "int8_method": q.chosen, "ort_fp32_val": ref,
           "onnx_mb": round((work / f"{name}.onnx").stat().st_size / 2**20, 2)}
    image = data.val.images[0]
    timed = {"torch_fp32": TorchPredictor(model, pre, n), "ort_fp32": fp32}
    if q.path is not None:
        int8 = OnnxPredictor(q.path, pre, n, precision="int8", threads=1)
        timed["ort_int8"] = int8
        out.update(int8_val=evaluate(int8, data.val, n, ignore).miou,
                   int8_holdout=evaluate(int8, data.holdout, n, ignore).miou,
                   int8_mb=round(q.path.stat().st_size / 2**20, 2))
    for key, p in timed.items():
        x = p.model_input(image)
        out[f"{key}_model_ms"] = measure(lambda p=p, x=x: p.logits(x), runs=args.runs).median_ms
        out[f"{key}_predict_ms"] = measure(lambda p=p: p.predict(image), runs=args.runs).median_ms
    return out


def part_seed(args: argparse.Namespace) -> dict:
    t0 = time.monotonic()
    threads = pin(args.cpu)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    prep = _prepared(args)
    data, runtime = prep.data, prep.runtime
    if data.holdout is None:
        raise SystemExit(f"{args.data}: no val/ folder to hold out")
    trial = optuna.trial.FixedTrial(prep.space.checked_baseline())
    teacher_cfg = prep.space.sample(trial, data=prep.data_spec, epochs=args.epochs, seed=args.arm_seed)
    arch, encoder = args.student.split("/", 1)
    student_cfg = teacher_cfg.with_changes(model={**teacher_cfg.model.model_dump(), "arch": arch, "encoder": encoder,
                                                  "aux_head": False})
    if args.student_lr is not None:
        student_cfg = student_cfg.with_changes(optimizer={**student_cfg.optimizer.model_dump(), "lr": args.student_lr})
    arms: dict[str, dict] = {}
    models = {}

    def train(name: str, cfg, criterion=None):
        t = time.monotonic()
        res = retrain(cfg, data, runtime, eval_subset=prep.sf.eval.subset, eval_points=2,
                      eval_batch_size=prep.sf.eval.batch_size, criterion=criterion, name=f"{name} retrain")
        model = res.model.cpu().eval()
        models[name] = model
        arms[name] = {**_scores(model, cfg, data), "train_s": round(time.monotonic() - t, 1),
                      "params_m": round(count_params(model) / 1e6, 3), "epochs": res.epochs}
        print(f"seed {args.arm_seed}: {name}: val {arms[name]['val']:.4f}, holdout {arms[name]['holdout']:.4f} "
              f"({arms[name]['train_s']:.0f} s)", flush=True)

    kept = args.workdir / f"teacher_{args.arm_seed}"
    if (kept / "config.json").is_file() and load_model(kept)[1] == teacher_cfg:
        model, _, info = load_model(kept)
        models["teacher"] = model.cpu().eval()
        arms["teacher"] = {**_scores(models["teacher"], teacher_cfg, data), **info["arm"], "reused": True}
        print(f"seed {args.arm_seed}: teacher reused from {kept.name}", flush=True)
    else:
        train("teacher", teacher_cfg)
        save_model(models["teacher"], teacher_cfg, kept, extra={"arm": {k: arms["teacher"][k] for k in
                                                                        ("train_s", "params_m", "epochs")}})
    train("student alone", student_cfg)
    for method in args.methods:
        given = (args.weight, args.temperature) if method == "logits" else (None, None)
        spec = KDSpec.of(method, *given)
        crit = DistillCriterion(student_cfg, models["teacher"], teacher_cfg.data.pad_divisor, spec, runtime.device)
        train(f"student + {method}", student_cfg, crit)
        arms[f"student + {method}"]["kd"] = spec.as_dict()
    best_kd = max((a for a in arms if a.startswith("student +")), key=lambda a: arms[a]["val"])
    input_size = padded_size(data.max_size(), teacher_cfg.data.pad_divisor)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for name, cfg in (("teacher", teacher_cfg), (best_kd, student_cfg)):
            arms[name].update(_int8(name.replace(" ", "_").replace("+", "kd"), models[name], cfg, data, input_size,
                                    Path(tmp), args))
    return {"seed": args.arm_seed, "epochs": args.epochs, "student": args.student, "threads": threads,
            "teacher": teacher_cfg.summary(), "student_cfg": student_cfg.summary(), "best_kd": best_kd,
            "train_images": len(data.train),
            "val_images": len(data.val), "holdout_images": len(data.holdout), "arms": arms,
            "wall_s": round(time.monotonic() - t0, 1)}


def _spread(xs: list[float], digits: int = 4) -> str:
    if not xs:
        return "-"
    mean = statistics.mean(xs)
    half = (max(xs) - min(xs)) / 2
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if len(xs) > 1 else f"{mean:.{digits}f}"


def print_table(workdir: Path) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(workdir.glob("seed_*.json"))]
    if not runs:
        raise SystemExit(f"no results in {workdir}")
    c = Console(width=160)
    first = runs[0]
    t = Table(title=f"distillation at equal epochs ({first['epochs']}): {len(runs)} seed(s), mean ± half-range; "
                    f"student {first['student']}")
    for col in ("arm", "val mIoU", "holdout mIoU", "vs alone (val)", "params M", "train s", "INT8 val",
                "INT8 model ms", "INT8 predict ms"):
        t.add_column(col, justify="left" if col == "arm" else "right")
    for arm in ARMS:
        got = [r["arms"][arm] for r in runs if arm in r["arms"]]
        if not got:
            continue
        gain = [r["arms"][arm]["val"] - r["arms"]["student alone"]["val"] for r in runs if arm in r["arms"]]
        t.add_row(arm, _spread([g["val"] for g in got]), _spread([g["holdout"] for g in got]),
                  "-" if arm == "teacher" else _spread(gain), f"{got[0]['params_m']:.2f}",
                  _spread([g["train_s"] for g in got], 0),
                  _spread([g["int8_val"] for g in got if "int8_val" in g]),
                  _spread([g["ort_int8_model_ms"] for g in got if "ort_int8_model_ms" in g], 1),
                  _spread([g["ort_int8_predict_ms"] for g in got if "ort_int8_predict_ms" in g], 1))
    c.print(t)
    c.print(f"teacher: {first['teacher']}\nstudent: {first.get('student_cfg', '-')}", highlight=False)
    for r in runs:
        te, st = r["arms"]["teacher"], r["arms"][r["best_kd"]]
        if "ort_int8_model_ms" in te and "ort_int8_model_ms" in st:
            c.print(f"seed {r['seed']}: INT8 model alone, teacher {te['ort_int8_model_ms']:.1f} ms vs "
                    f"{r['best_kd']} {st['ort_int8_model_ms']:.1f} ms: "
                    f"{te['ort_int8_model_ms'] / st['ort_int8_model_ms']:.2f}x; val loss of the distilled student "
                    f"against the teacher {te['val'] - st['val']:+.4f}", highlight=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=CAMVID)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--student", default="Linknet/tu-mobilenetv3_small_100", help="ARCH/ENCODER")
    ap.add_argument("--methods", nargs="+", choices=list(KD_METHODS), default=list(KD_METHODS),
                    help="the KD methods to measure")
    ap.add_argument("--student-lr", type=float, help="the student's LR (default: the teacher's)")
    ap.add_argument("--keep-teacher", action="store_true", help="keep the workdir's teachers and reuse them")
    ap.add_argument("--weight", type=float, help="logits KD weight (default: the method's)")
    ap.add_argument("--temperature", type=float, help="logits KD temperature (default: the method's)")
    ap.add_argument("--calibration", type=int, default=32, help="INT8 calibration images")
    ap.add_argument("--runs", type=int, default=30, help="latency runs per variant")
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench_distill"))
    ap.add_argument("--parallel", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2)
    ap.add_argument("--table", action="store_true", help="print the tables of an earlier run")
    ap.add_argument("--part", choices=["all", "seed"], default="all")
    ap.add_argument("--arm-seed", type=int, default=0)
    ap.add_argument("--cpu", type=int, default=None)
    args = ap.parse_args()
    if args.table:
        print_table(args.workdir)
        return
    if args.part == "seed":
        out = part_seed(args)
        (args.workdir / f"seed_{args.arm_seed}.json").write_text(json.dumps(out, indent=2))
        return
    if args.keep_teacher and (args.workdir / "space.yaml").is_file():
        for old in args.workdir.glob("seed_*.json"):
            old.unlink()
    else:
        fresh_workdir(args.workdir)
    passed = ["--data", str(args.data.resolve()), "--epochs", str(args.epochs), "--student", args.student,
              "--methods", *args.methods,
              "--calibration", str(args.calibration), "--runs", str(args.runs), "--workdir", str(args.workdir)]
    for flag, value in (("--weight", args.weight), ("--temperature", args.temperature),
                        ("--student-lr", args.student_lr)):
        if value is not None:
            passed += [flag, str(value)]
    cores = os.cpu_count() or 1
    failed = []
    for first in range(0, args.seeds, cores if args.parallel else 1):
        procs = []
        for s in range(first, min(args.seeds, first + (cores if args.parallel else 1))):
            cmd = [sys.executable, "-m", "benchmarks.distill", "--part", "seed", "--arm-seed", str(s), *passed]
            if args.parallel:
                cpu = s % cores
                cmd = ["taskset", "-c", str(cpu), *cmd, "--cpu", str(cpu)]
            procs.append((s, subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"} if args.parallel
                                              else None)))
        failed += [s for s, p in procs if p.wait() != 0]
    if failed:
        raise SystemExit(f"seed(s) {failed} failed; see above")
    print_table(args.workdir)


if __name__ == "__main__":
    main()
