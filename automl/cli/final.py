"""`automl final`: retrain the best trial, decide on TTA, quantize to INT8, write the bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from automl.cli.common import add_study_args
from automl.config import StudyFile, load_study_file
from automl.terminal import markup_safe

if TYPE_CHECKING:  # the command line imports this module at start-up: no data code then
    from automl.data.folder import Dataset


def _overrides(args: argparse.Namespace) -> dict:
    pairs = {"data.root": args.data, "device": args.device, "final.epochs": args.final_epochs,
             "final.latency_threads": args.threads, "final.train_on_trainval": True if args.trainval else None}
    return {k: v for k, v in pairs.items() if v is not None}


def run_and_show(sf: StudyFile, console: Console, *, storage: str | None = None, out: Path | None = None,
                 trial_number: int | None = None, reuse_model: bool = False,
                 data: Dataset | None = None) -> Path:
    """Run the final stage and print its table; also what `automl search` calls when
    ``final.after_search`` is set."""
    from automl.final import run_final
    from automl.final.report import distill_table, report_table

    result = run_final(sf, storage=storage, out=out, trial_number=trial_number, reuse_model=reuse_model, data=data)
    console.print(report_table(result.report))
    if result.report.get("distill"):
        console.print(distill_table(result.report["distill"]))
    bundle = markup_safe(result.bundle_dir)
    console.print(f"bundle: {bundle}  (report: {markup_safe(result.bundle_dir / 'report.md')})", highlight=False)
    console.print(f"predict: automl predict {bundle} IMAGE... --out DIR", highlight=False)
    return result.bundle_dir


def cmd_final(args: argparse.Namespace, console: Console) -> int:
    sf = load_study_file(args.study, overrides=_overrides(args), runs_root=Path(args.runs_root))
    run_and_show(sf, console, storage=args.storage, out=Path(args.out) if args.out else None,
                 trial_number=args.trial, reuse_model=args.reuse_model)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("final", help="retrain the best trial, TTA decision, ONNX + INT8, write the bundle")
    add_study_args(p)
    p.add_argument("--out", help="bundle folder (default: runs/<study>/bundle)")
    p.add_argument("--epochs", dest="final_epochs", type=int, metavar="N",
                   help="retrain epochs (overrides final.epochs)")
    p.add_argument("--trial", type=int, help="retrain this completed trial instead of the best one")
    p.add_argument("--trainval", action="store_true", help="train on train+val (overrides final.train_on_trainval)")
    p.add_argument("--threads", type=int, help="threads for the latency report (overrides final.latency_threads)")
    p.add_argument("--reuse-model", action="store_true",
                   help="skip the retrain if runs/<study>/final_model holds one of the same config (e.g. after a "
                        "failure in a later step)")
    p.add_argument("--data", help="dataset folder (overrides data.root)")
    p.add_argument("--device", help="training device: auto, cpu, cuda, cuda:N")
    p.set_defaults(func=cmd_final)
