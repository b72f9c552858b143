"""What the work after the final retrain costs, against the unit `automl run` prices it in: one
image of the trial's batched val pass (``automl.overnight.reserve_seconds``).

For the baseline model of studies/camvid.yaml (random init: timing does not depend on the
weights) on one core and one thread, it times a warm batched val pass, the bundle's predictors
image by image (torch fp32, ORT fp32, ORT INT8), ONNX export, and MinMax INT8 calibration at two
calibration-set sizes, which separates its fixed part (pre-processing, writing the model) from
its cost per calibration image. The last column gives each figure in val-pass images: what
``CALIBRATION_COST`` and the latency calls should be priced at.

    python -m benchmarks.final_costs --dataset camvid
    python -m benchmarks.final_costs --dataset em-like
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna
from rich.console import Console
from rich.table import Table

from automl.bundle.predictor import OnnxPredictor, TorchPredictor
from automl.data.folder import padded_size
from automl.final.evaluate import evaluate
from automl.final.export import export_onnx
from automl.final.quantize import DEFAULT_ATTEMPTS, CalibrationReader, pre_process, quantize
from automl.trial.augment import eval_transform
from automl.trial.engine import fit, subset_indices
from benchmarks import budget
from benchmarks.common import fresh_workdir, pin


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _per_call(fn, runs: int = 5) -> float:
    fn()  # warm-up
    return min(_timed(fn) for _ in range(runs))


def measure(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """Rows of (what, seconds, seconds in val-pass images)."""
    threads = pin(args.cpu)
    args.part = "costs"
    prep = budget._prepared(args, threads)
    data, n_cls = prep.data, prep.data_spec.num_classes
    cfg = budget.baseline_config(prep, 2)
    # two scored epochs: the second val pass is warm, as the retrain's re-pricing uses it
    res = fit(cfg, data, prep.runtime)
    pass_s = res.times.eval_full_s[-1] if res.times.eval_full_s else res.times.eval_s / 2
    unit = pass_s / len(data.val)
    model = res.model.cpu().eval()
    pre = eval_transform(cfg.data)
    image = data.val.images[0]
    rows = [("val pass (batched, warm), per image", unit, 1.0)]
    torch_pred = TorchPredictor(model, pre, n_cls)
    t = _timed(lambda: evaluate(torch_pred, data.val, n_cls, cfg.data.ignore_index)) / len(data.val)
    rows.append(("score torch fp32, per image", t, t / unit))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        size = padded_size(data.max_size(), cfg.data.pad_divisor)
        t = _timed(lambda: export_onnx(model, work / "model.onnx", size, cfg.data.pad_divisor))
        rows.append(("ONNX export", t, t / unit))
        ort = OnnxPredictor(work / "model.onnx", pre, n_cls, threads=threads)
        t = _timed(lambda: evaluate(ort, data.val, n_cls, cfg.data.ignore_index)) / len(data.val)
        rows.append(("score ORT fp32, per image", t, t / unit))
        t = _timed(lambda: pre_process(work / "model.onnx", work / "model.pre.onnx"))
        rows.append(("INT8 quant_pre_process", t, t / unit))
        calib = [ort.model_input(data.train.images[i]) for i in
                 subset_indices(len(data.train), min(1.0, args.calibration_images / len(data.train)))]
        half = calib[: len(calib) // 2]
        minmax = DEFAULT_ATTEMPTS[0]
        t_half = _timed(lambda: quantize(work / "model.pre.onnx", work / "h.onnx", CalibrationReader(half), minmax))
        t_all = _timed(lambda: quantize(work / "model.pre.onnx", work / "q.onnx", CalibrationReader(calib), minmax))
        per = (t_all - t_half) / (len(calib) - len(half))
        rows.append((f"INT8 MinMax calibration, per image ({len(half)} → {len(calib)} images)", per, per / unit))
        rows.append(("INT8 MinMax, fixed part", t_all - per * len(calib), (t_all - per * len(calib)) / unit))
        int8 = OnnxPredictor(work / "q.onnx", pre, n_cls, precision="int8", threads=threads)
        t = _timed(lambda: evaluate(int8, data.val, n_cls, cfg.data.ignore_index)) / len(data.val)
        rows.append(("score ORT int8, per image", t, t / unit))
        for name, p in (("torch fp32", torch_pred), ("ORT fp32", ort), ("ORT int8", int8)):
            t = _per_call(lambda p=p: p.predict(image))
            rows.append((f"latency call, {name}", t, t / unit))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["camvid", "em-like"], default="camvid")
    ap.add_argument("--data", type=Path, help="as benchmarks.budget's --data")
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench_final_costs"))
    ap.add_argument("--cpu", type=int, default=0, help="the core to pin to (one thread)")
    ap.add_argument("--calibration-images", type=int, default=32, help="final.int8.calibration_images")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget.study_defaults(args)
    fresh_workdir(args.workdir)
    budget._ensure_data(args)
    table = Table(title=f"work after the retrain, {args.dataset}, one core, one thread")
    for col in ("what", "seconds", "val-pass images"):
        table.add_column(col, justify="left" if col == "what" else "right")
    for what, s, units in measure(args):
        table.add_row(what, f"{s:.3f}", f"{units:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
