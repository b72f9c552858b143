"""CUDA paths, checked and timed in one run on a GPU machine.

    python -m benchmarks.gpu_check --out runs/gpu_check            # on the GPU machine (time: benchmarks/README.md)
    python -m benchmarks.gpu_check --out runs/gpu_check --quick    # a CPU dry run of every section

Sections, each on synthetic data the package generates at CamVid's full size (480×360, 367 train /
101 val) with search_spaces/default.yaml's baseline (FPN-resnet34, 384² crops, batch 16):

1. model-only training steps: fp32, bf16 autocast, bf16 + channels_last (the GPU's ceiling);
2. the trial engine (`automl.trial.engine.fit`) under the same three runtimes: a real trial's
   training img/s, evaluation img/s and val mIoU (finite, above chance);
3. the data pipeline alone (albumentations crops → DataLoader → device normalisation) with
   0–14 loader workers;
4. several trials per GPU: `automl search --trials-per-gpu K` over a one-model space, so
   trials cost the same, K = 1, 2, 4 → trials per hour;
5. `automl run --budget --trials-per-gpu 4` end to end on the full GPU space: packed search, retrain,
   TTA, ONNX, INT8, bundle.

Every section writes <out>/gpu_check.json as it ends, so a killed run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import optuna
import torch
import yaml
from rich.console import Console
from rich.table import Table

from automl.config import load_study_file, parse_duration
from automl.data.loader import Normalizer, train_loader
from automl.data.synthetic import CLASSES, generate
from automl.study.runner import prepare
from automl.trial.augment import train_transform
from automl.trial.engine import Runtime, fit
from automl.trial.losses import SegmentationLoss
from automl.trial.model import build_model
from automl.trial.optim import build_optimizer
from benchmarks.budget import baseline_config

ROOT = Path(__file__).parents[1]


def runtimes(device: str) -> dict[str, Runtime]:
    dev = torch.device(device)
    if dev.type != "cuda":  # --quick on a CPU: the same code paths, no mixed precision
        return {"fp32": Runtime(dev), "fp32 + channels_last": Runtime(dev, None, channels_last=True)}
    return {"fp32": Runtime(dev), "bf16": Runtime(dev, torch.bfloat16),
            "bf16 + channels_last": Runtime(dev, torch.bfloat16, channels_last=True)}


def space_doc(one_model: bool, quick: bool) -> dict:
    doc = yaml.safe_load((ROOT / "search_spaces" / "default.yaml").read_text())
    if quick:
        doc["augment"]["crop"] = [64, 64]
    if one_model:  # equal-cost trials for the packing section
        doc["model"].update(architectures=["FPN"], encoders=["resnet34"])
        doc["batch_size"] = {"choices": [16]}
    return doc


def dataset(args: argparse.Namespace) -> Path:
    """The synthetic dataset, generated once and shared by every section's study."""
    n_train, n_val, h, w = (24, 8, 96, 128) if args.quick else (367, 101, 360, 480)
    return generate(args.out / "data", n_train=n_train, n_val=n_val, height=h, width=w, seed=0)


def write_study(work: Path, args: argparse.Namespace, *, name: str, one_model: bool, **over) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    (work / "space.yaml").write_text(yaml.safe_dump(space_doc(one_model, args.quick)))
    doc = {"name": name, "search_space": "space.yaml", "device": args.device, "num_workers": args.loader_workers,
           "data": {"root": str(dataset(args).resolve()), "classes": list(CLASSES)},
           "budget": {"n_trials": 4, "trial_epochs": 3}, "eval": {"subset": 0.3, "batch_size": 16},
           "pruner": {"type": "none"}, "sampler": {"seed": 0}}
    for key, value in over.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    path = work / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def section_model_only(prep, args) -> list[dict]:
    cfg = baseline_config(prep, 1)
    rows = []
    steps, warm = (2, 1) if args.quick else (30, 8)
    crop = (cfg.augment.crop_height, cfg.augment.crop_width)
    for label, rt in runtimes(args.device).items():
        model = build_model(cfg.model, cfg.data.num_classes).to(rt.device)
        if rt.channels_last:
            model = model.to(memory_format=torch.channels_last)
        loss_fn = SegmentationLoss(cfg.loss, cfg.data.num_classes, cfg.data.ignore_index).to(rt.device)
        opt = build_optimizer(model.parameters(), cfg.optimizer)
        x = torch.randn(cfg.batch_size, 3, *crop, device=rt.device)
        if rt.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, cfg.data.num_classes, (cfg.batch_size, *crop), device=rt.device)
        if rt.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(rt.device)
        t_build = time.perf_counter()
        for i in range(warm + steps):
            if i == warm:
                sync(rt.device)
                t0 = time.perf_counter()
                warm_s = t0 - t_build
            with rt.autocast():
                loss = loss_fn(model(x), y, None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(rt.device)
        dt = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(rt.device) / 2**30 if rt.device.type == "cuda" else float("nan")
        rows.append({"runtime": label, "train_img_s": round(steps * cfg.batch_size / dt, 1),
                     "warmup_s": round(warm_s, 1), "peak_gib": round(peak, 2), "loss": round(loss.item(), 3)})
        del model, opt, x, y
    return rows


def section_engine(prep, args) -> list[dict]:
    epochs = 1 if args.quick else 4
    cfg = baseline_config(prep, epochs)
    n_train, n_val = len(prep.data.train), len(prep.data.val)
    rows = []
    for label, rt in runtimes(args.device).items():
        t0 = time.perf_counter()
        res = fit(cfg, prep.data, rt, eval_subset=0.3, eval_batch_size=16, num_workers=args.loader_workers)
        wall = time.perf_counter() - t0
        first = res.history[0].seconds
        steady = [h.seconds for h in res.history[1:-1]]  # subset-scored epochs after the first
        val_imgs = sum(n_val if h.full_val else round(0.3 * n_val) for h in res.history)
        rows.append({"runtime": label, "wall_s": round(wall, 1), "first_epoch_s": round(first, 2),
                     "steady_epoch_s": round(sum(steady) / len(steady), 2) if steady else None,
                     "train_img_s": round(epochs * n_train / res.times.train_s, 1),
                     "eval_img_s": round(val_imgs / res.times.eval_s, 1),
                     "val_miou": round(res.history[-1].miou, 4)})
        del res
    return rows


def section_loader(prep, args) -> list[dict]:
    cfg = baseline_config(prep, 1)
    rt = Runtime.resolve(args.device)
    norm = Normalizer(cfg.data.mean, cfg.data.std, rt.device, rt.channels_last)
    rows = []
    for workers in ((0, 2) if args.quick else (0, 2, 8, 14)):
        loader = train_loader(prep.data.train, train_transform(cfg.augment, cfg.data.ignore_index),
                              batch_size=cfg.batch_size, seed=0, num_workers=workers,
                              pin_memory=rt.device.type == "cuda")
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            n = 0
            for imgs, masks in loader:
                norm(imgs)
                masks.to(rt.device, non_blocking=True)
                n += len(imgs)
            sync(rt.device)
            times.append(time.perf_counter() - t0)
        rows.append({"loader_workers": workers, "first_epoch_s": round(times[0], 2),
                     "img_s": round(2 * n / sum(times[1:]), 1)})
        del loader
    return rows


def section_packing(args) -> list[dict]:
    rows = []
    ks = (1, 2) if args.quick else (1, 2, 4)
    for k in ks:
        work = args.out / f"pack{k}"
        n_trials = 2 * k if k > 1 else 2
        study = write_study(work, args, name=f"pack{k}", one_model=True,
                            budget={"n_trials": n_trials, "trial_epochs": 1 if args.quick else 4},
                            num_workers=max(1, 12 // k))
        cmd = [sys.executable, "-m", "automl", "search", str(study), "--runs-root", str(work / "runs")]
        cmd += ["--trials-per-gpu", str(k)] if torch.cuda.is_available() else ["--workers", str(k)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise RuntimeError(f"automl search (K={k}) exited {proc.returncode}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        st = optuna.load_study(study_name=f"pack{k}", storage=f"sqlite:///{work / 'runs' / f'pack{k}' / 'study.db'}")
        done = [t for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE]
        lengths = sorted(t.user_attrs.get("wall_s", float("nan")) for t in done)
        rows.append({"trials_per_gpu": k, "complete": len(done), "of": len(st.trials), "wall_s": round(wall, 1),
                     "trials_per_h": round(len(done) / wall * 3600, 1),
                     "median_trial_s": round(lengths[len(lengths) // 2], 1) if lengths else None})
    return rows


def section_run(args) -> list[dict]:
    work = args.out / "run"
    study = write_study(work, args, name="gpurun", one_model=False,
                        budget={"n_trials": 100, "trial_epochs": 1 if args.quick else 4},
                        pruner={"type": "hyperband", "min_resource": 1, "reduction_factor": 3},
                        final={"latency_runs": 10, "int8": {"calibration_images": 16}} if not args.quick
                        else {"latency_runs": 5})
    budget = "90s" if args.quick else f"{args.run_minutes:g}m"
    t0 = time.perf_counter()
    pack = ["--trials-per-gpu", str(args.run_trials_per_gpu)] if torch.cuda.is_available() else ["--workers", "2"]
    # The log goes straight to a file: a device call cut short at its limit still returns it.
    # The section stops itself at 2 x budget + 3 min, rather than taking the device call with it.
    limit_s = 2 * parse_duration(budget) + 180
    with (args.out / "run.log").open("w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "automl", "run", str(study), "--runs-root", str(work / "runs"),
                                 "--budget", budget, *pack], stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: the workers go with it
        try:
            returncode = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError(f"automl run --budget {budget} still running after {limit_s:.0f} s; see run.log") from exc
    wall = time.perf_counter() - t0
    if returncode:
        raise RuntimeError(f"automl run exited {returncode}; see run.log")
    bundle = work / "runs" / "gpurun" / "bundle"
    report = json.loads((bundle / "report.json").read_text())
    st = optuna.load_study(study_name="gpurun", storage=f"sqlite:///{work / 'runs' / 'gpurun' / 'study.db'}")
    states = [t.state.name for t in st.trials]
    rows = [{"what": "budget / wall", "value": f"{budget} / {wall:.0f} s ({' '.join(pack)})"},
            {"what": "trials", "value": ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))},
            {"what": "models tried", "value": ", ".join(sorted({t.params.get('model', '?') for t in st.trials}))},
            {"what": "retrained", "value": f"{report['retrain']['config']} ({report['retrain']['epochs']} ep, "
                                           f"{report['retrain']['device']})"},
            {"what": "final stage wall (of it retrain)",
             "value": f"{report['wall_s']:.0f} s ({report['retrain']['wall_s']:.0f} s)"},
            {"what": "bundle files", "value": ", ".join(sorted(p.name for p in bundle.iterdir()))}]
    for variant, m in report["evaluation"]["val"].items():
        rows.append({"what": f"val mIoU {variant}", "value": f"{m['miou']:.4f}"})
    lat = report.get("latency", {})
    for variant, m in lat.get("results", {}).items():
        rows.append({"what": f"latency {variant} ({lat.get('threads')} CPU threads)",
                     "value": f"{m['median_ms']:.1f} ms median"})
    return rows


def env_rows(args) -> list[dict]:
    import albumentations
    import segmentation_models_pytorch as smp
    import timm

    rows = [{"what": "torch", "value": torch.__version__}, {"what": "optuna", "value": optuna.__version__},
            {"what": "smp / timm / albumentations", "value": f"{smp.__version__} / {timm.__version__} / "
                                                              f"{albumentations.__version__}"},
            {"what": "cpu cores", "value": str(os.cpu_count())}]
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        rows.append({"what": "gpu", "value": f"{p.name}, {p.total_memory / 2**30:.0f} GiB, "
                                             f"bf16 {torch.cuda.is_bf16_supported()}"})
    return rows


def print_rows(console: Console, title: str, rows: list[dict]) -> None:
    if not rows:
        return
    t = Table(title=title)
    for col in rows[0]:
        t.add_column(col)
    for r in rows:
        t.add_row(*(str(r.get(c)) for c in rows[0]))
    console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/gpu_check"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a dry run of every section on a CPU")
    ap.add_argument("--loader-workers", type=int, default=8, help="DataLoader workers of one trial")
    ap.add_argument("--run-minutes", type=float, default=2.5, help="section 5's budget")
    ap.add_argument("--run-trials-per-gpu", type=int, default=4, help="section 5's trials per GPU")
    ap.add_argument("--sections", default="env,model,engine,loader,packing,run")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = Console(width=160)
    results: dict[str, object] = {}
    titles = {"env": "environment", "model": "1. model-only training steps (GPU ceiling)",
              "engine": "2. trial engine (fit) per runtime", "loader": "3. data pipeline alone",
              "packing": "4. trials per GPU (automl search --trials-per-gpu K)", "run": "5. automl run end to end"}
    prep = None
    for name in args.sections.split(","):
        t0 = time.perf_counter()
        try:
            if name in ("model", "engine", "loader") and prep is None:
                prep = prepare(load_study_file(write_study(args.out / "base", args, name="base", one_model=True)))
            if name == "env":
                rows = env_rows(args)
            elif name in ("packing", "run"):
                rows = {"packing": section_packing, "run": section_run}[name](args)
            else:
                rows = {"model": section_model_only, "engine": section_engine, "loader": section_loader}[name](prep, args)
            results[name] = {"rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
            print_rows(console, f"{titles[name]} ({time.perf_counter() - t0:.0f} s)", rows)
        except Exception as exc:  # one broken path must not hide the others' figures
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
            console.print(f"[red]{titles[name]} failed[/]: {type(exc).__name__}: {str(exc)[:1500]}")
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
