"""`automl search`: run or resume the search of a study, in this process or in N workers."""

from __future__ import annotations

import argparse
import time

from rich.console import Console

from automl.cli.common import add_study_args, load_study
from automl.cli.worker import add_run_args


def _forwarded(args: argparse.Namespace) -> list[str]:
    out = ["--runs-root", args.runs_root]
    for flag, value in (("--storage", args.storage), ("--data", args.data), ("--device", args.device),
                        ("--n-trials", args.n_trials), ("--timeout", args.timeout), ("--epochs", args.epochs)):
        if value is not None:
            out += [flag, str(value)]
    return out


def cmd_search(args: argparse.Namespace, console: Console) -> int:
    import torch

    from automl.study.progress import LiveView
    from automl.study.runner import prepare, run_search, setup_study
    from automl.study.summary import print_summary

    sf = load_study(args)
    prep = prepare(sf, storage=args.storage)
    n_workers = args.workers or (args.trials_per_gpu * torch.cuda.device_count() if args.trials_per_gpu else 1)
    console.print(f"[bold]{sf.name}[/]: {len(prep.data.train)} train / {len(prep.data.val)} val images, "
                  f"input {prep.input_size[1]}x{prep.input_size[0]}, {len(prep.space.pairs)} model pairs, "
                  f"device {prep.runtime.device}, {n_workers} worker(s)")
    study = setup_study(prep)
    with LiveView(study, sf.budget.n_trials, console) as view:
        if n_workers > 1:
            _supervise(study, view, args, n_workers, sf.run_dir)
        else:
            run_search(prep, study, events=view, callbacks=[view])
    print_summary(study, prep.storage_url, console, args.study)
    return 0


def _supervise(study, view, args: argparse.Namespace, n_workers: int, run_dir) -> None:
    """Start N worker processes and follow the study through the storage until they exit."""
    from optuna.trial import TrialState

    from automl.study.workers import WorkerPool, worker_commands

    pool = WorkerPool(worker_commands(args.study, n_workers, extra_args=_forwarded(args)), run_dir / "logs")
    pool.start()
    seen: set[int] = set()
    try:
        while True:
            alive = pool.running()
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                               TrialState.FAIL)):
                if t.number not in seen:
                    seen.add(t.number)
                    view(study, t)
            if not alive:
                break
            time.sleep(2.0)
    finally:
        pool.stop()
    bad = [c for c in pool.exit_codes() if c not in (0, None)]
    if bad:
        view.console.print(f"[yellow]{len(bad)} worker(s) exited with an error; see {run_dir.name}/logs/")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="run (or resume) the search of a study")
    add_study_args(p)
    add_run_args(p)
    p.add_argument("--workers", type=int, help="worker processes on this machine (same study)")
    p.add_argument("--trials-per-gpu", type=int, help="with GPUs: workers per GPU (sets --workers)")
    p.set_defaults(func=cmd_search)
