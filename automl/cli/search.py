"""`automl search`: run or resume the search of a study, in this process or in N workers."""

from __future__ import annotations

import argparse

from rich.console import Console

from automl.cli.common import add_study_args, load_study, search_view
from automl.cli.worker import add_pool_args, add_run_args, forwarded_run_args


def cmd_search(args: argparse.Namespace, console: Console) -> int:
    from automl.study.runner import final_study, prepare, run_all
    from automl.study.workers import WorkerPool, follow_pool, worker_commands, worker_count
    from automl.view.dashboard_hooks import morning_view
    from automl.view.summary import print_summary

    sf = load_study(args)
    prep = prepare(sf, storage=args.storage)
    n_workers = worker_count(args.workers, args.trials_per_gpu)
    console.print(f"[bold]{sf.name}[/]: {len(prep.data.train)} train / {len(prep.data.val)} val images, "
                  f"input {prep.input_size[1]}x{prep.input_size[0]}, {len(prep.space.pairs)} model pairs, "
                  f"device {prep.runtime.device}, {n_workers} worker(s)")
    with search_view(prep, console) as view:
        if n_workers > 1:
            follow_pool(view, WorkerPool(worker_commands(args.study, n_workers, extra_args=forwarded_run_args(args)),
                                         sf.run_dir / "logs"), sf, prep.storage_url)
        else:
            dashboard = morning_view(prep)
            run_all(prep, on_study=view.follow, events=view, callbacks=[view, *dashboard.callbacks],
                    completed_hooks=dashboard.completed_hooks)
    print_summary(final_study(sf, prep.storage_url), sf, prep.storage_url, console, args.study)
    if args.final or sf.final.after_search:
        from automl.cli.final import run_and_show

        run_and_show(sf, console, storage=args.storage, data=prep.data)  # decoded once per process
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="run (or resume) the search of a study")
    add_study_args(p)
    add_run_args(p)
    add_pool_args(p)
    p.add_argument("--final", action="store_true", help="run the final stage when the search ends")
    p.set_defaults(func=cmd_search)
