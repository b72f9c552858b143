"""A Pareto search (val mIoU against latency) on CamVid-small; prints the front as a table.

    python -m benchmarks.pareto_camvid --data ../shared/datasets/camvid-small --minutes 10 --epochs 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from rich.console import Console

from automl.config import load_study_file
from automl.study.runner import prepare, run_all
from automl.study.selection import select_trial
from automl.view.summary import front_table
from benchmarks.common import camvid_data, fresh_workdir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/camvid-small"))
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench_pareto"))
    args = ap.parse_args()
    fresh_workdir(args.workdir)
    doc = {"name": "pareto", "data": camvid_data(args.data),
           "search_space": "space.yaml", "objectives": ["val_miou", "latency_ms"],
           "budget": {"n_trials": 200, "trial_epochs": args.epochs, "timeout": args.minutes * 60},
           "eval": {"subset": 0.3}, "device": "cpu", "sampler": {"seed": 0, "n_startup_trials": 4}}
    (args.workdir / "pareto.yaml").write_text(yaml.safe_dump(doc))
    sf = load_study_file(args.workdir / "pareto.yaml", runs_root=args.workdir / "runs")
    study = run_all(prepare(sf))
    console = Console()
    console.print(f"{len(study.trials)} trials, {len(study.best_trials)} on the front")
    console.print(front_table(study, sf))
    knee = select_trial(study, sf)
    console.print(f"knee: trial {knee.number} (val mIoU {knee.values[0]:.4f}, {knee.values[1]:.1f} ms)")


if __name__ == "__main__":
    main()
