"""`automl worker`: join a study's search from any process or machine (Optuna's distributed mode).

Every worker points at the same storage (PostgreSQL/MySQL URL, or a journal file on a shared
disk); each keeps its own copy of the data, whose path may differ per machine (``--data``).
Workers never enqueue the baseline: ``automl search`` does that once.
"""

from __future__ import annotations

import argparse

import torch
from rich.console import Console

from automl.cli.common import add_study_args, load_study


def cmd_worker(args: argparse.Namespace, console: Console) -> int:
    from automl.study.progress import LiveView
    from automl.study.runner import prepare, run_all, setup_study
    from automl.study.storage import mask_url

    if args.threads:
        torch.set_num_threads(args.threads)
    sf = load_study(args)
    prep = prepare(sf, storage=args.storage)
    console.print(f"worker {args.worker_index} joins study [bold]{sf.name}[/] on {mask_url(prep.storage_url)} "
                  f"(device {prep.runtime.device}, {torch.get_num_threads()} threads)")
    first = setup_study(prep, worker_index=args.worker_index, enqueue_baseline=False,
                        stage_index=0 if sf.stages else None)
    with LiveView(first, sf.stages[0].n_trials if sf.stages else sf.budget.n_trials, console) as view:
        run_all(prep, worker_index=args.worker_index, enqueue_baseline=False, on_study=view.follow, events=view,
                callbacks=[view])
    return 0


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="dataset folder on this machine (overrides data.root)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--n-trials", type=int, help="total finished trials for the study")
    p.add_argument("--timeout", help="total search time for the study, e.g. 90m, 8h")
    p.add_argument("--epochs", type=int, help="epochs per trial")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="join the search of a study (same storage, any machine)")
    add_study_args(p)
    add_run_args(p)
    p.add_argument("--worker-index", type=int, default=0, help="distinct per worker: seeds its sampler")
    p.add_argument("--threads", type=int, help="torch CPU threads for this worker")
    p.set_defaults(func=cmd_worker)
