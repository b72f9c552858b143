"""`automl worker`: join a study's search from any process or machine (Optuna's distributed mode).

Every worker points at the same storage (PostgreSQL/MySQL URL, or a journal file on a shared
disk); each keeps its own copy of the data, whose path may differ per machine (``--data``).
Workers never enqueue the baseline: ``automl search`` does that once.
"""

from __future__ import annotations

import argparse

import torch
from rich.console import Console

from automl.cli.common import add_study_args, load_study, search_view


def cmd_worker(args: argparse.Namespace, console: Console) -> int:
    from automl.study.runner import prepare, run_all
    from automl.study.storage import mask_url
    from automl.view.dashboard_hooks import morning_view

    if args.threads:
        torch.set_num_threads(args.threads)
    sf = load_study(args)
    if args.run_budget:  # trials as `automl run` compares them (budget.equal)
        from automl.overnight import for_run

        sf = for_run(sf)
    prep = prepare(sf, storage=args.storage)
    limits = {}
    if args.run_budget:  # a worker of `automl run`: the same gate as its in-process search
        from automl.config import parse_duration
        from automl.overnight import BudgetPlan, SearchGate
        from automl.study.storage import open_storage

        plan = BudgetPlan.split(parse_duration(args.run_budget), sf)
        limits = SearchGate(prep, plan, open_storage(prep.storage_url, sf.storage)).limits()
    console.print(f"worker {args.worker_index} joins study [bold]{sf.name}[/] on {mask_url(prep.storage_url)} "
                  f"(device {prep.runtime.device}, {torch.get_num_threads()} threads)")
    if prep.storage_url.startswith("journal://"):
        console.print("[yellow]note:[/] a journal file has no heartbeat: if a worker on another machine dies, "
                      "its trial stays RUNNING; across machines use PostgreSQL or MySQL", highlight=False)
    with search_view(prep, console, worker_index=args.worker_index, enqueue_baseline=False) as view:
        dashboard = morning_view(prep)
        run_all(prep, worker_index=args.worker_index, enqueue_baseline=False, on_study=view.follow, events=view,
                callbacks=[view, *dashboard.callbacks], completed_hooks=dashboard.completed_hooks, **limits)
    return 0


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="dataset folder on this machine (overrides data.root)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--n-trials", type=int, help="total finished trials for the study")
    p.add_argument("--timeout", help="total search time for the study, e.g. 90m, 8h")
    p.add_argument("--epochs", type=int, help="epochs per trial")


def forwarded_run_args(args: argparse.Namespace) -> list[str]:
    """The flags of :func:`add_run_args` (and the study's location) as a worker process gets them."""
    out = ["--runs-root", args.runs_root]
    for flag, value in (("--storage", args.storage), ("--data", args.data), ("--device", args.device),
                        ("--n-trials", args.n_trials), ("--timeout", args.timeout), ("--epochs", args.epochs)):
        if value is not None:
            out += [flag, str(value)]
    return out


def add_pool_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, help="worker processes on this machine (same study)")
    p.add_argument("--trials-per-gpu", type=int,
                   help="with GPUs: workers per GPU, e.g. 4 on small data (sets --workers)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="join the search of a study (same storage, any machine)")
    add_study_args(p)
    add_run_args(p)
    p.add_argument("--worker-index", type=int, default=0, help="distinct per worker: seeds its sampler")
    p.add_argument("--threads", type=int, help="torch CPU threads for this worker")
    p.add_argument("--run-budget", help="set by `automl run --workers`: keep to the search's share of this budget")
    p.set_defaults(func=cmd_worker)
