"""Staged search (augmentation/loss/LR first, then the model) against a flat search over the
union space, with the same total search time, on CamVid-small.

    python -m benchmarks.staged_vs_flat --data ../shared/datasets/camvid-small --minutes 10 --epochs 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import optuna
import yaml
from rich.console import Console
from rich.table import Table

from automl.config import load_study_file
from automl.study.runner import final_study, prepare, run_all
from automl.study.selection import select_trial
from benchmarks.common import camvid_data, fresh_workdir

STAGES = [{"name": "data", "search": ["aug.*", "loss.*", "adam.lr"]},
          {"name": "model", "search": ["model", "optimizer", "adamw.*", "sgd.*", "batch_size", "schedule",
                                       "cosine.*", "poly.*", "onecycle.*", "aux_head"]}]


def study_doc(name: str, data: Path, minutes: float, epochs: int, staged: bool) -> dict:
    doc = {"name": name, "data": camvid_data(data),
           "search_space": "space.yaml", "budget": {"n_trials": 200, "trial_epochs": epochs, "timeout": minutes * 60},
           "eval": {"subset": 0.3}, "pruner": {"type": "hyperband", "min_resource": 1}, "device": "cpu",
           "sampler": {"seed": 0, "n_startup_trials": 4}}
    if staged:
        doc["stages"] = [{**s, "n_trials": 200, "timeout": minutes * 60 / 2} for s in STAGES]
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/camvid-small"))
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench_staged"))
    args = ap.parse_args()
    fresh_workdir(args.workdir)
    table = Table(title=f"staged vs flat, {args.minutes:g} min of search each, {args.epochs}-epoch trials")
    for col in ("search", "best val mIoU", "trials (complete/pruned/failed)", "wall min", "best config"):
        table.add_column(col)
    for staged in (False, True):
        name = "staged" if staged else "flat"
        path = args.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(study_doc(name, args.data, args.minutes, args.epochs, staged)))
        sf = load_study_file(path, runs_root=args.workdir / "runs")
        t0 = time.perf_counter()
        run_all(prepare(sf))
        wall = (time.perf_counter() - t0) / 60
        url = f"sqlite:///{sf.run_dir / 'study.db'}"
        studies = [optuna.load_study(study_name=s.study_name, storage=url)
                   for s in optuna.get_all_study_summaries(url)]
        counts = [sum(t.state.name == k for s in studies for t in s.trials) for k in ("COMPLETE", "PRUNED", "FAIL")]
        best = select_trial(final_study(sf, url), sf)
        if staged:  # the best over both stages
            best = max((select_trial(s, sf) for s in studies), key=lambda t: t.value)
        from automl.trial_config import TrialConfig

        table.add_row(name, f"{best.value:.4f}", "/".join(map(str, counts)), f"{wall:.1f}",
                      TrialConfig.from_dict(best.user_attrs["config"]).summary())
    Console().print(table)


if __name__ == "__main__":
    main()
