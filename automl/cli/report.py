"""`automl report`: the search summary as Markdown plus PNG plots under runs/<study>/report/."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from automl.cli.common import add_study_args, load_study
from automl.terminal import markup_safe


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    import optuna

    from automl.study.stages import current_study_name
    from automl.study.storage import mask_url, open_storage, resolve_url
    from automl.view.report import write_report

    sf = load_study(args)
    url = resolve_url(sf, args.storage)
    storage = open_storage(url, sf.storage)
    name = current_study_name(sf, storage)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        console.print(f"no study named {name} in {markup_safe(mask_url(url))} yet: run `automl search "
                      f"{markup_safe(args.study)}`", highlight=False)
        return 1
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
