"""Trials per hour with 1 and with N worker processes on the same study (this machine's cores).

    python -m benchmarks.workers_throughput --data ../shared/datasets/camvid-small --trials 6 --workers 2

Runs `automl search --workers K` on a fresh SQLite study for each K, with short fixed-length
trials (no pruning), and reports finished trials per hour of wall time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from rich.console import Console
from rich.table import Table

from benchmarks.common import camvid_data, fresh_workdir


def run(k: int, args: argparse.Namespace) -> tuple[float, int]:
    work = fresh_workdir(args.workdir / f"w{k}")
    doc = {"name": f"throughput{k}", "data": camvid_data(args.data),
           "search_space": "space.yaml", "budget": {"n_trials": args.trials, "trial_epochs": args.epochs},
           "eval": {"subset": 0.3}, "pruner": {"type": "none"}, "device": "cpu"}
    (work / "study.yaml").write_text(yaml.safe_dump(doc))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "automl", "search", str(work / "study.yaml"), "--runs-root",
                    str(work / "runs"), "--workers", str(k)], check=True, capture_output=True)
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=f"throughput{k}", storage=f"sqlite:///{work / 'runs' / f'throughput{k}' / 'study.db'}")
    done = len([t for t in study.trials if t.state.is_finished() and t.state.name != "FAIL"])
    return wall, done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/camvid-small"))
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench_workers"))
    args = ap.parse_args()
    table = Table(title=f"throughput, {args.trials} trials of {args.epochs} epoch(s), CamVid-small, CPU")
    for col in ("workers", "wall s", "finished trials", "trials / hour"):
        table.add_column(col)
    for k in sorted({1, args.workers}):
        wall, done = run(k, args)
        table.add_row(str(k), f"{wall:.0f}", str(done), f"{done / wall * 3600:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
