"""`automl run`: one command for the night — search, final retrain and bundle within one budget."""

from __future__ import annotations

import argparse

from rich.console import Console

from automl.cli.common import add_study_args, load_study, search_view
from automl.cli.worker import add_pool_args, add_run_args, forwarded_run_args


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from automl.config import parse_duration
    from automl.overnight import BudgetPlan, run_overnight
    from automl.study.runner import prepare
    from automl.study.workers import worker_count
    from automl.view.dashboard_hooks import morning_view

    total = parse_duration(args.budget)
    sf = load_study(args)
    prep = prepare(sf, storage=args.storage)
    plan = BudgetPlan.split(total, sf)
    n_workers = worker_count(args.workers, args.trials_per_gpu)
    console.print(f"[bold]{sf.name}[/]: budget {total / 60:.0f} min — search up to {plan.search_s / 60:.0f} min "
                  f"in {n_workers} worker(s), then the final retrain with what is left (less "
                  f"{'a reserve priced from the search' if plan.reserve_s is None else f'{plan.reserve_s / 60:.1f} min'} "
                  "for export, TTA and INT8)")
    with search_view(prep, console) as view:
        search = _pool_search(args, view, prep, n_workers, total) if n_workers > 1 else None
        dashboard = morning_view(prep)
        result = run_overnight(prep, total, on_study=view.follow, events=view, callbacks=[view, *dashboard.callbacks],
                               completed_hooks=dashboard.completed_hooks, search=search)
    if result is not None:
        from automl.final.report import report_table

        console.print(report_table(result.report))
        console.print(f"bundle: {result.bundle_dir}")
    return 0


def _pool_search(args: argparse.Namespace, view, prep, n_workers: int, total_s: float):
    """The search of `automl run --workers N`: N `automl worker --run-budget` processes (each keeps to
    the budget's search share by the same gate), followed through the storage until all stop."""
    from automl.study.runner import final_study
    from automl.study.workers import WorkerPool, follow_pool, worker_commands

    def search():
        commands = worker_commands(args.study, n_workers,
                                   extra_args=[*forwarded_run_args(args), "--run-budget", f"{total_s:g}"])
        follow_pool(view, WorkerPool(commands, prep.sf.run_dir / "logs"), prep.sf, prep.storage_url)
        return final_study(prep.sf, prep.storage_url)

    return search


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="search + final retrain + bundle within one budget (resumable)")
    add_study_args(p)
    add_run_args(p)
    add_pool_args(p)
    p.add_argument("--budget", required=True, help="total wall time for search and final, e.g. 45m, 8h")
    p.set_defaults(func=cmd_run)
