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
    from automl.study.runner import final_study, prepare, run_all, setup_study
    from automl.study.summary import print_summary

    sf = load_study(args)
    prep = prepare(sf, storage=args.storage)
    n_workers = args.workers or (args.trials_per_gpu * torch.cuda.device_count() if args.trials_per_gpu else 1)
    console.print(f"[bold]{sf.name}[/]: {len(prep.data.train)} train / {len(prep.data.val)} val images, "
                  f"input {prep.input_size[1]}x{prep.input_size[0]}, {len(prep.space.pairs)} model pairs, "
                  f"device {prep.runtime.device}, {n_workers} worker(s)")
    first = setup_study(prep, stage_index=0 if sf.stages else None)
    with LiveView(first, sf.stages[0].n_trials if sf.stages else sf.budget.n_trials, console) as view:
        if n_workers > 1:
            _supervise(view, args, n_workers, sf, prep.storage_url)
        else:
            run_all(prep, on_study=view.follow, events=view, callbacks=[view])
    print_summary(final_study(sf, prep.storage_url), sf, prep.storage_url, console, args.study)
    if args.final or sf.final.after_search:
        from automl.cli.final import run_and_show

        run_and_show(sf, console, storage=args.storage)
    return 0


def _supervise(view, args: argparse.Namespace, n_workers: int, sf, storage_url: str) -> None:
    """Start N worker processes and follow the study (or stages) through the storage until they exit."""
    import optuna
    from optuna.trial import TrialState

    from automl.study.stages import stage_study_name
    from automl.study.storage import open_storage
    from automl.study.workers import WorkerPool, worker_commands

    run_dir = sf.run_dir
    storage = open_storage(storage_url, sf.storage)
    names = [stage_study_name(sf, i) for i in range(len(sf.stages))] if sf.stages else [sf.name]
    targets = [st.n_trials for st in sf.stages] if sf.stages else [sf.budget.n_trials]
    pool = WorkerPool(worker_commands(args.study, n_workers, extra_args=_forwarded(args)), run_dir / "logs")
    pool.start()
    seen: set[tuple[str, int]] = set()
    current = names[0]
    try:
        while True:
            alive = pool.running()
            existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
            for name, target in zip(names, targets):
                if name not in existing:
                    continue
                study = optuna.load_study(study_name=name, storage=storage)
                if name != current:
                    current = name
                    view.follow(study, target)
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                   TrialState.FAIL)):
                    if (name, t.number) not in seen:
                        seen.add((name, t.number))
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
    p.add_argument("--final", action="store_true", help="run the final stage when the search ends")
    p.set_defaults(func=cmd_search)
