"""`automl search`: run or resume the search of a study."""

from __future__ import annotations

import argparse

from rich.console import Console

from automl.cli.common import add_study_args, load_study


def cmd_search(args: argparse.Namespace, console: Console) -> int:
    from automl.study.progress import LiveView
    from automl.study.runner import prepare, run_search, setup_study
    from automl.study.summary import print_summary

    sf = load_study(args)
    prep = prepare(sf, storage=args.storage)
    console.print(f"[bold]{sf.name}[/]: {len(prep.data.train)} train / {len(prep.data.val)} val images, "
                  f"input {prep.input_size[1]}x{prep.input_size[0]}, {len(prep.space.pairs)} model pairs, "
                  f"device {prep.runtime.device}")
    study = setup_study(prep)
    with LiveView(study, sf.budget.n_trials, console) as view:
        study = run_search(prep, study, events=view, callbacks=[view])
    print_summary(study, prep.storage_url, console, args.study)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="run (or resume) the search of a study")
    add_study_args(p)
    p.add_argument("--data", help="dataset folder (overrides data.root)")
    p.add_argument("--n-trials", type=int, help="total finished trials for the study")
    p.add_argument("--timeout", help="stop starting trials after this long, e.g. 90m, 8h")
    p.add_argument("--epochs", type=int, help="epochs per trial")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.set_defaults(func=cmd_search)
