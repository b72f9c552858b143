"""Does the search pay for itself? On CamVid-small, at equal wall time T:

  (a) the default recipe (FPN-resnet18, Adam 2e-4, cosine, CE, 128² random crops + flip: the
      search space's baseline) trained for as many epochs as fit in T;
  (b) `automl run <study> --budget T`: search, retrain the winner, export, INT8, bundle;

and the rank correlation (Spearman) between the search's short-trial score and a longer
training of the same configuration, for the baseline plus configurations drawn at random from
search_spaces/cpu.yaml.

    python -m benchmarks.budget --data ../shared/datasets/camvid-small --minutes 45

With --parallel (the default when the machine has two or more cores) (a) and (b) run at the
same time, each pinned to its own core with one thread: equal hardware, equal wall time, and
the pair takes T instead of 2T. The rank part then trains its configurations in one process
per core. Every part writes <workdir>/<part>.json; `--part table` prints the table again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from rich.console import Console
from rich.table import Table
from scipy.stats import spearmanr

from automl.config import load_study_file
from automl.study.runner import prepare
from automl.trial.engine import fit
from automl.trial_config import TrialConfig
from benchmarks.common import camvid_data, fresh_workdir

EVAL_SUBSET = 0.3  # intermediate epochs are scored on this share of val, the last on all of it


def study_doc(args: argparse.Namespace, threads: int) -> dict:
    """The study `automl run` gets: studies/camvid.yaml's settings, no trial-count cap."""
    budget = {"n_trials": 1000, "trial_epochs": args.trial_epochs, "timeout": args.minutes * 60,
              "trial_time_limit": "15m"}
    if args.patience:
        budget["patience"] = args.patience
    if args.trial_schedule_epochs:
        budget["trial_schedule_epochs"] = args.trial_schedule_epochs
    return {"name": "budget", "data": camvid_data(args.data), "search_space": "space.yaml", "budget": budget,
            "eval": {"subset": EVAL_SUBSET}, "pruner": {"type": "hyperband", "min_resource": 2, "reduction_factor": 3},
            "sampler": {"seed": 0, "n_startup_trials": args.startup_trials}, "device": "cpu",
            "final": {"latency_threads": threads},
            "run": {"min_final_epochs": args.min_final_epochs, "search_fraction": args.search_fraction}}


def _pin(cpu: int | None) -> int:
    """One core and one thread for this process (parallel mode); returns the thread count."""
    import torch

    if cpu is None:
        return torch.get_num_threads()
    os.sched_setaffinity(0, {cpu})
    torch.set_num_threads(1)
    return 1


def _prepared(args: argparse.Namespace, threads: int):
    """Each part writes its own copy of the study file (they start at the same time); all name
    the study `budget`, so (b)'s run folder is <workdir>/runs/budget."""
    path = args.workdir / f"{args.part}.yaml"
    path.write_text(yaml.safe_dump(study_doc(args, threads)))
    return prepare(load_study_file(path, runs_root=args.workdir / "runs"))


def baseline_config(prep, epochs: int, seed: int = 0) -> TrialConfig:
    """The space's baseline block as a TrialConfig: exactly the search's enqueued first trial."""
    trial = optuna.trial.FixedTrial(prep.space.checked_baseline())
    return prep.space.sample(trial, data=prep.data_spec, epochs=epochs, seed=seed)


def part_default(args: argparse.Namespace) -> dict:
    """(a): one calibration epoch gives the epoch time; the cosine schedule then spans as many
    epochs as fit in what is left of T. The calibration epoch counts against T."""
    t0 = time.monotonic()
    threads = _pin(args.cpu)
    prep = _prepared(args, threads)
    calib = fit(baseline_config(prep, 1), prep.data, prep.runtime)
    # training time per epoch and the cost of one full val pass, apart: the calibration epoch's
    # wall time includes model build, warm-up and evaluation, and taken as the epoch time it
    # leaves much of T unused (the measured shortfall is in benchmarks/README.md)
    epoch_s, eval_s = calib.times.train_s, calib.times.eval_s
    left = args.minutes * 60 - (time.monotonic() - t0) - 4 * eval_s  # 3 curve points + the last
    epochs = max(1, math.floor(0.98 * left / epoch_s))
    quarters = {max(1, round(epochs * q)) for q in (0.25, 0.5, 0.75)}
    res = fit(baseline_config(prep, epochs), prep.data, prep.runtime, eval_epochs=quarters)
    return {"part": "default", "val_miou": res.history[-1].miou, "epochs": epochs, "epoch_s": round(epoch_s, 2),
            "curve": {h.epoch: round(h.miou, 4) for h in res.history}, "threads": threads,
            "wall_s": round(time.monotonic() - t0, 1), "config": baseline_config(prep, epochs).summary()}


def part_run(args: argparse.Namespace) -> dict:
    """(b): the real CLI, `automl run --budget T`, in this process's core/thread setting."""
    t0 = time.monotonic()
    threads = _pin(args.cpu)
    prep = _prepared(args, threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "automl", "run", str(args.workdir / "run.yaml"), "--runs-root",
           str(args.workdir / "runs"), "--budget", f"{args.minutes:g}m"]
    with open(args.workdir / "run.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.monotonic() - t0
    report = json.loads((prep.sf.run_dir / "bundle" / "report.json").read_text())
    study = optuna.load_study(study_name=prep.sf.name, storage=prep.storage_url)
    states = [t.state.name for t in study.trials]
    val = report["evaluation"]["val"]
    return {"part": "run", "val_miou": val["torch_fp32"]["miou"], "shipped": report["default_predictor"]["variant"],
            "shipped_val_miou": val[_key(report["default_predictor"])]["miou"],
            "int8_val_miou": val.get("ort_int8", {}).get("miou"), "epochs": report["retrain"]["epochs"],
            "final_wall_s": report["wall_s"], "retrain_wall_s": report["retrain"]["wall_s"],
            "trials": {s: states.count(s) for s in sorted(set(states))}, "threads": threads,
            "best_trial": report["search"]["retrained_trial"], "config": report["retrain"]["config"],
            "search_wall_s": report["search"]["wall_s"], "startup_trials": args.startup_trials,
            "patience": args.patience, "trial_schedule_epochs": args.trial_schedule_epochs,
            "min_final_epochs": args.min_final_epochs, "search_fraction": args.search_fraction,
            "wall_s": round(wall, 1)}


def _key(default: dict) -> str:
    base = "torch_fp32" if default["backend"] == "torch" else f"ort_{default['precision']}"
    return base + ("_tta" if default["tta"] else "")


def rank_configs(prep, n: int, seed: int, epochs: int) -> list[TrialConfig]:
    """The baseline, the space's portfolio, then configurations drawn at random from the space
    (conditional branches included) up to n, each with the trial's own seed."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = [baseline_config(prep, epochs)]
    for i, recipe in enumerate(prep.space.checked_portfolio()):
        trial = optuna.trial.FixedTrial(recipe)
        configs.append(prep.space.sample(trial, data=prep.data_spec, epochs=epochs, seed=i + 1))
    while len(configs) < n:
        trial = study.ask()
        configs.append(prep.space.sample(trial, data=prep.data_spec, epochs=epochs, seed=trial.number + 1))
    return configs[:n]


def part_rank(args: argparse.Namespace) -> dict:
    """Short (the search's trial: trial_epochs, subset-scored rungs, full val at the end) and long
    (args.long_epochs) training of configuration shard args.shard (k of n)."""
    threads = _pin(args.cpu)
    prep = _prepared(args, threads)
    k, n = (int(v) for v in args.shard.split("/"))
    rows = []
    short_ep = args.trial_epochs
    for i, cfg in enumerate(rank_configs(prep, args.configs, args.seed, short_ep)):
        if i % n != k:
            continue
        t0 = time.monotonic()
        short = fit(cfg, prep.data, prep.runtime, eval_subset=EVAL_SUBSET, eval_epochs={short_ep}) if args.short else None
        long_cfg = cfg.model_copy(update={"epochs": args.long_epochs})
        full = fit(long_cfg, prep.data, prep.runtime, eval_epochs={short_ep})
        rows.append({"i": i, "config": cfg.summary(), "short": short and short.history[-1].miou, "short_epochs": short_ep,
                     "at_trial_epochs_of_long": next(h.miou for h in full.history if h.epoch == short_ep),
                     "long": full.history[-1].miou, "long_epochs": args.long_epochs, "wall_s": round(time.monotonic() - t0, 1)})
        (args.workdir / f"rank_{k}.json").write_text(json.dumps({"rows": rows}, indent=1))  # keep what is done
    return {"part": f"rank_{k}", "rows": rows, "long_epochs": args.long_epochs}


def _child(args: argparse.Namespace, part: str, cpu: int | None, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "benchmarks.budget", "--part", part, "--data", str(args.data), "--minutes",
           f"{args.minutes:g}", "--workdir", str(args.workdir), "--configs", str(args.configs), "--long-epochs",
           str(args.long_epochs), "--seed", str(args.seed), "--trial-epochs", str(args.trial_epochs),
           "--startup-trials", str(args.startup_trials), "--min-final-epochs", str(args.min_final_epochs),
           "--search-fraction", str(args.search_fraction),
           *(["--patience", str(args.patience)] if args.patience else []),
           *(["--trial-schedule-epochs", str(args.trial_schedule_epochs)] if args.trial_schedule_epochs else []),
           *([] if args.short else ["--no-short"]), *extra]
    if cpu is None:
        return subprocess.Popen(cmd)
    return subprocess.Popen([*cmd, "--cpu", str(cpu)], env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait(procs: list[subprocess.Popen]) -> None:
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"a benchmark part failed (exit codes {codes}); see {procs[0].args}")


def print_table(workdir: Path) -> None:
    def load(name: str) -> dict | None:
        p = workdir / f"{name}.json"
        return json.loads(p.read_text()) if p.exists() else None

    a, b = load("default"), load("run")
    t = Table(title="CamVid-small val mIoU at equal wall time")
    for col in ("", "val mIoU", "wall min", "threads", "trials", "search min", "final epochs", "config"):
        t.add_column(col)
    if a:
        t.add_row("(a) default recipe", f"{a['val_miou']:.4f}", f"{a['wall_s'] / 60:.1f}", str(a["threads"]), "-",
                  "-", str(a["epochs"]), a["config"])
    if b:
        trials = ", ".join(f"{v} {k.lower()}" for k, v in b["trials"].items())
        t.add_row("(b) automl run", f"{b['val_miou']:.4f} (shipped {b['shipped']}: {b['shipped_val_miou']:.4f}; "
                  f"int8 {b['int8_val_miou'] or float('nan'):.4f})", f"{b['wall_s'] / 60:.1f}", str(b["threads"]),
                  trials, f"{b['search_wall_s'] / 60:.1f}" if "search_wall_s" in b else "?", str(b["epochs"]),
                  b["config"])
    Console(width=200).print(t)
    rows = sorted((r for f in sorted(workdir.glob("rank_*.json")) for r in json.loads(f.read_text())["rows"]),
                  key=lambda r: r["i"])
    if rows:
        r = Table(title="short trial vs long training, same configuration")
        ep = rows[0]["short_epochs"]
        for col in ("#", "config", f"short ({ep} ep)", "long", f"long at ep {ep}", "wall min"):
            r.add_column(col)
        for row in rows:
            short = "-" if row["short"] is None else f"{row['short']:.4f}"
            r.add_row(str(row["i"]), row["config"], short, f"{row['long']:.4f}",
                      f"{row['at_trial_epochs_of_long']:.4f}", f"{row['wall_s'] / 60:.1f}")
        Console(width=200).print(r)
        if len(rows) >= 3:
            long = [x["long"] for x in rows]
            for label, key in ((f"short trial ({ep} ep, own schedule)", "short"),
                               (f"epoch {ep} of the long schedule", "at_trial_epochs_of_long")):
                if any(x[key] is None for x in rows):
                    continue
                rho, p = spearmanr([x[key] for x in rows], long)
                Console().print(f"Spearman rank correlation, {label} vs long ({rows[0].get('long_epochs', '?')} ep): "
                                f"{rho:.3f} (p = {p:.3f}, n = {len(rows)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/camvid-small"))
    ap.add_argument("--minutes", type=float, default=45, help="T, the wall time of (a) and of (b)")
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench_budget"))
    ap.add_argument("--part", choices=["all", "default", "run", "rank", "table"], default="all")
    ap.add_argument("--parallel", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2)
    ap.add_argument("--cpu", type=int, default=None, help="pin this part to one core (set by --parallel)")
    ap.add_argument("--configs", type=int, default=6, help="configurations in the rank correlation")
    ap.add_argument("--long-epochs", type=int, default=15, help="the long training's epochs")
    ap.add_argument("--trial-epochs", type=int, default=6, help="the search's trial length (studies/camvid.yaml)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--startup-trials", type=int, default=8, help="(b): TPE's random start-up trials")
    ap.add_argument("--patience", type=int, help="(b): budget.patience (default: off)")
    ap.add_argument("--min-final-epochs", type=int, default=40, help="(b): run.min_final_epochs (studies/camvid.yaml)")
    ap.add_argument("--search-fraction", type=float, default=0.3,
                    help="(b): run.search_fraction (studies/camvid.yaml)")
    ap.add_argument("--trial-schedule-epochs", type=int, default=15,
                    help="(b): budget.trial_schedule_epochs, as in studies/camvid.yaml (0: off)")
    ap.add_argument("--no-rank", dest="rank", action="store_false", help="(a) and (b) only")
    ap.add_argument("--no-short", dest="short", action="store_false",
                    help="rank part: long training only (epoch trial_epochs of it is what a trial with "
                         "budget.trial_schedule_epochs = long epochs scores)")
    ap.add_argument("--shard", default="0/1", help="rank part: this process's share k/n of the configurations")
    args = ap.parse_args()
    args.workdir = args.workdir.resolve()
    args.data = args.data.resolve()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    if args.part == "table":
        return print_table(args.workdir)
    if args.part != "all":
        if not (args.workdir / "space.yaml").exists():
            fresh_workdir(args.workdir)
        out = {"default": part_default, "run": part_run, "rank": part_rank}[args.part](args)
        (args.workdir / f"{out['part']}.json").write_text(json.dumps(out, indent=1))
        return None
    fresh_workdir(args.workdir)
    if args.parallel:
        _wait([_child(args, "default", 0), _child(args, "run", 1)])
        if args.rank:
            _wait([_child(args, "rank", k, ("--shard", f"{k}/2")) for k in range(2)])
    else:
        for part in ("default", "run", "rank")[:3 if args.rank else 2]:
            _wait([_child(args, part, None)])
    print_table(args.workdir)
    return None


if __name__ == "__main__":
    main()
