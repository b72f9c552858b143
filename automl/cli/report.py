"""`automl report`: the search summary as Markdown plus PNG plots under runs/<study>/report/."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from automl.cli.common import add_study_args, open_latest_study
from automl.terminal import markup_safe


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from automl.view.report import write_report

    opened = open_latest_study(args, console)
    if opened is None:
        return 1
    sf, study = opened.sf, opened.study
    out = Path(args.out) if args.out else sf.run_dir / "report"
    files = write_report(study, sf, out)
    console.print(f"wrote {markup_safe(files.markdown)}", highlight=False, soft_wrap=True)
    for path in files.plots:
        console.print(f"wrote {markup_safe(path)}", highlight=False, soft_wrap=True)
    for name, why in files.skipped.items():
        console.print(f"skipped {name}: {markup_safe(why)}", highlight=False, soft_wrap=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the search summary (Markdown) and plots (PNG) to runs/<study>/report/")
    add_study_args(p)
    p.add_argument("--out", help="output folder (default: runs/<study>/report)")
    p.set_defaults(func=cmd_report)
