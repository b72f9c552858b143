"""`automl distill`: distil the final stage's retrained model into a smaller student and add it to
the bundle (``final.distill``, or ``--student ARCH/ENCODER``). Resumable like `automl final`: the
teacher bundle and each finished student are kept and reused."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from automl.cli.common import add_study_args
from automl.config import KD_METHOD_NAMES, load_study_file
from automl.terminal import markup_safe


def _overrides(args: argparse.Namespace) -> dict:
    pairs = {"data.root": args.data, "device": args.device, "final.latency_threads": args.threads}
    out = {k: v for k, v in pairs.items() if v is not None}
    for key, value in (("method", args.method), ("weight", args.weight), ("temperature", args.temperature),
                       ("epochs", args.epochs), ("lr", args.lr)):
        if value is not None:
            out[f"final.distill.{key}"] = value
    return out


def cmd_distill(args: argparse.Namespace, console: Console) -> int:
    from automl.final.distill import run_distill
    from automl.final.report import distill_table

    overrides = _overrides(args)
    if args.student is not None:
        overrides["final.distill.student"] = args.student
    sf = load_study_file(args.study, overrides=overrides, runs_root=Path(args.runs_root))
    result = run_distill(sf, storage=args.storage, out=Path(args.out) if args.out else None)
    console.print(distill_table(result.table))
    _refresh_note(sf, args.storage)
    bundle = markup_safe(result.bundle_dir)
    console.print(f"bundle: {bundle}  (default model: {result.table['default_model']}; student: "
                  f"{markup_safe(result.bundle_dir / 'student')})", highlight=False)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="distil the retrained model into a smaller student; add it to the bundle")
    add_study_args(p)
    p.add_argument("--student", metavar="ARCH/ENCODER",
                   help="the student model, e.g. Linknet/tu-mobilenetv3_small_100 (overrides final.distill.student)")
    p.add_argument("--method", choices=KD_METHOD_NAMES, help="KD term (overrides final.distill.method)")
    p.add_argument("--weight", type=float, help="KD weight (overrides final.distill.weight)")
    p.add_argument("--temperature", type=float, help="KD temperature (overrides final.distill.temperature)")
    p.add_argument("--epochs", type=int, help="student epochs (default: the teacher's final epochs)")
    p.add_argument("--lr", type=float, help="the student's learning rate (overrides final.distill.lr; default: its "
                                            "recipe's)")
    p.add_argument("--out", help="bundle folder (default: runs/<study>/bundle)")
    p.add_argument("--threads", type=int, help="threads for the latency report (overrides final.latency_threads)")
    p.add_argument("--data", help="dataset folder (overrides data.root)")
    p.add_argument("--device", help="training device: auto, cpu, cuda, cuda:N")
    p.set_defaults(func=cmd_distill)


def _refresh_note(sf, storage: str | None) -> None:
    """The study's note in optuna-dashboard shows the bundle's report, now with the student."""
    import logging

    from automl.final.source import load_existing_study
    from automl.study.storage import resolve_url
    from automl.view.notes import refresh_study_note

    try:
        refresh_study_note(load_existing_study(sf, resolve_url(sf, storage)), sf)
    except Exception as exc:  # noqa: BLE001 - the bundle stands without the note
        logging.getLogger(__name__).warning("study note not refreshed: %s", exc)
