"""Does an EMA of the final retrain's weights (``final.ema``) pay, on the split no decision touched?

Per seed, the default recipe (the space's baseline) is retrained as `automl run` retrains it, on
train + the selection split, for ``--epochs`` epochs, with one weight average per horizon riding
along (:class:`automl.trial.ema.WeightAverage`, the hook ``final.ema`` uses). The trained weights
and each average are scored on the untouched split (CamVid-small's val/, or em-like's test/) and
on the selection split (which the retrain trained on, as ``final.ema``'s decision does: that
score is optimistic). Each comparison is paired: the averages and the trained weights come from
the same run. Seeds run side by side, each pinned to its own core with one thread.

    python -m benchmarks.weight_average --dataset camvid --epochs 30 --seeds 2
    python -m benchmarks.weight_average --dataset em-like --epochs 250 --seeds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import optuna
from rich.console import Console
from rich.table import Table

from automl.bundle.predictor import TorchPredictor
from automl.final.evaluate import evaluate
from automl.final.retrain import retrain
from automl.trial.augment import eval_transform
from automl.trial.ema import WeightAverage
from benchmarks import budget
from benchmarks.common import fresh_workdir, pin


def run_seed(args: argparse.Namespace) -> dict:
    threads = pin(args.cpu)
    args.part = f"ema_{args.arm_seed}"
    prep = budget._prepared(args, threads)
    holdout = budget._holdout(prep)
    cfg = budget.baseline_config(prep, args.epochs, args.arm_seed)
    averages = {h: WeightAverage(h) for h in args.horizons}

    def on_step(model, step, total):
        for a in averages.values():
            a(model, step, total)

    t0 = time.monotonic()
    res = retrain(cfg, prep.data, prep.runtime, train_on_trainval=True, eval_subset=prep.sf.eval.subset,
                  average=on_step)
    wall = time.monotonic() - t0
    n_cls, ignore, pre = cfg.data.num_classes, cfg.data.ignore_index, eval_transform(cfg.data)

    def scores(model) -> dict:
        p = TorchPredictor(model.cpu().eval(), pre, n_cls)
        return {"holdout": evaluate(p, holdout, n_cls, ignore).miou,
                "selection": evaluate(p, prep.data.val, n_cls, ignore).miou}

    out = {"seed": args.arm_seed, "epochs": args.epochs, "wall_s": round(wall, 1), "trained": scores(res.model)}
    for h, a in averages.items():
        out[f"ema {h:g}"] = scores(a.model)
    return out


def _child(args: argparse.Namespace, seed: int, cpu: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "benchmarks.weight_average", "--dataset", args.dataset, "--data", str(args.data),
           "--workdir", str(args.workdir), "--epochs", str(args.epochs), "--arm-seed", str(seed), "--cpu", str(cpu),
           "--horizons", ",".join(f"{h:g}" for h in args.horizons)]
    return subprocess.Popen(["taskset", "-c", str(cpu), *cmd], env={**os.environ, "OMP_NUM_THREADS": "1"})


def print_table(results: list[dict], args: argparse.Namespace) -> None:
    arms = [k for k in results[0] if k == "trained" or k.startswith("ema ")]
    t = Table(title=f"EMA of the final retrain's weights: {args.dataset}, {args.epochs} epochs on train + selection, "
                    f"paired per seed")
    t.add_column("weights")
    for r in results:
        t.add_column(f"seed {r['seed']} untouched", justify="right")
    t.add_column("mean ± half-range untouched", justify="right")
    t.add_column("− trained, untouched", justify="right")
    t.add_column("− trained, selection (trained on)", justify="right")

    def spread(xs: list[float]) -> str:
        return f"{statistics.mean(xs):+.4f} ± {(max(xs) - min(xs)) / 2:.4f}" if len(xs) > 1 else f"{xs[0]:+.4f}"

    for arm in arms:
        held = [r[arm]["holdout"] for r in results]
        d_held = [r[arm]["holdout"] - r["trained"]["holdout"] for r in results]
        d_sel = [r[arm]["selection"] - r["trained"]["selection"] for r in results]
        t.add_row(arm, *(f"{x:.4f}" for x in held), spread(held).lstrip("+"),
                  "" if arm == "trained" else spread(d_held), "" if arm == "trained" else spread(d_sel))
    Console(width=180).print(t)
    Console().print(f"wall per seed: {', '.join(str(r['wall_s']) for r in results)} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["camvid", "em-like"], default="camvid")
    ap.add_argument("--data", type=Path, help="as benchmarks.budget's --data")
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench_weight_average"))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--horizons", default="0.05,0.1,0.25", help="EMA horizons, shares of the run's steps")
    ap.add_argument("--arm-seed", type=int, default=None, help="run one seed (set by the parent)")
    ap.add_argument("--cpu", type=int, default=None)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.horizons = [float(h) for h in args.horizons.split(",")]
    one_seed = args.arm_seed is not None
    budget.study_defaults(args)
    if one_seed:
        out = run_seed(args)
        (args.workdir / f"seed_{args.arm_seed}.json").write_text(json.dumps(out, indent=1))
        return
    fresh_workdir(args.workdir)
    budget._ensure_data(args)
    procs = [_child(args, s, s % max(1, os.cpu_count() or 1)) for s in range(args.seeds)]
    if any(p.wait() for p in procs):
        raise SystemExit("a seed failed")
    print_table([json.loads((args.workdir / f"seed_{s}.json").read_text()) for s in range(args.seeds)], args)


if __name__ == "__main__":
    main()
