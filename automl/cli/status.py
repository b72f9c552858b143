"""`automl status`: trials by state, best trial, time spent and an estimate of time left."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from automl.cli.common import add_study_args, load_study
from automl.terminal import markup_safe


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    import optuna

    from automl.study.stages import study_budgets
    from automl.study.storage import mask_url, open_storage, resolve_url
    from automl.view.status import study_status

    sf = load_study(args)
    url = resolve_url(sf, args.storage)
    storage = open_storage(url, sf.storage)
    shown = 0
    for name, target, timeout in study_budgets(sf):
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            console.print(f"study {name}: not started yet")
            continue
        _print_status(console, study_status(study, sf, target, timeout), url, staged=bool(sf.stages))
        shown += 1
    if not shown:
        console.print(f"nothing in {markup_safe(mask_url(url))} yet: run `automl search {markup_safe(args.study)}`",
                      highlight=False)
        return 1
    return 0


def _print_status(console: Console, st, url: str, staged: bool) -> None:
    from automl.study.storage import mask_url

    kind = "stage" if staged else "study"
    table = Table(title=f"{kind} {st.name} ({markup_safe(mask_url(url))})", show_header=False)
    table.add_row("trials", ", ".join(f"{n} {k}" for k, n in st.counts.items() if n) or "none")
    table.add_row("progress", f"{st.budget.finished}/{st.budget.target} finished")
    table.add_row("best", "-" if st.best_value is None else f"#{st.best_number}: val mIoU {st.best_value:.4f}  "
                                                             f"{markup_safe(st.best_summary)}")
    limit = f" of {_hms(st.budget.timeout_s)}" if st.budget.timeout_s else ""
    table.add_row("search time", f"{_hms(st.budget.elapsed_s)}{limit}")
    table.add_row("median trial", _hms(st.median_trial_s))
    table.add_row("workers now", str(st.active_workers))
    table.add_row("time left (est.)", _hms(st.eta_s))
    if st.run:
        r = st.run
        table.add_row("run budget", f"{_hms(r.get('budget_s'))}: search {_hms(r.get('search_s'))}, final "
                                    f"{r.get('final_epochs', '-')} epochs of trial #{r.get('final_trial', '-')} "
                                    f"({_hms(r.get('final_s'))}), state {r.get('state', '-')}")
    for label, text in st.data:
        table.add_row(label, markup_safe(text))
    for retry, original in st.retries:
        table.add_row("retry", f"#{retry} retries #{original}")
    for number, reason in st.recent_failures:
        table.add_row(f"failed #{number}", markup_safe(reason))
    console.print(table)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="trials by state, best trial, time spent and left")
    add_study_args(p)
    p.set_defaults(func=cmd_status)
