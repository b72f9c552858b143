"""`automl init DATA`: plan a study from a dataset folder. Prints what it found and every decision
with its reason, writes ``studies/<name>.yaml`` and ``search_spaces/<name>.yaml``, and ends with
the command to run."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from automl.errors import ConfigError
from automl.terminal import markup_safe, visible

PROGRESS_FROM = 200  # files; a bar for folders at least this large
VALUES_SHOWN = 24
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def study_name(root: Path) -> str:
    """The folder's name as a study name (letters, digits, ``_.-``)."""
    return _NAME.sub("_", root.resolve().name).strip("._") or "data"


def _fingerprint(root: Path, console: Console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from automl.data.fingerprint import fingerprint

    progress = Progress(TextColumn("reading masks"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console, transient=True)
    task = None

    def on_progress(done: int, total: int) -> None:
        nonlocal task
        if total < PROGRESS_FROM:
            return
        if task is None:
            progress.start()
            task = progress.add_task("masks", total=total)
        progress.update(task, completed=done)

    try:
        return fingerprint(root, origin="DATA", on_progress=on_progress)
    finally:
        if task is not None:
            progress.stop()


def _show_found(console: Console, plan) -> None:
    from automl.data.fingerprint import MASK_KINDS
    from automl.plan.render import found_summary

    fp, enc = plan.fingerprint, plan.encoding
    console.print(f"[bold]found[/] in {markup_safe(fp.root)}:")
    for line in found_summary(fp):
        console.print(f"  {markup_safe(line)}", highlight=False)
    console.print(f"  mask modes: {', '.join(f'{markup_safe(m)} ({n})' for m, n in fp.mask_modes.items())}; read as "
                  f"{MASK_KINDS[fp.mask_kind]}", highlight=False)
    for note in fp.notes:
        console.print(f"  note: {markup_safe(note)}", highlight=False)
    owner = {k: name for name, keys in zip(enc.classes, enc.class_keys) for k in keys}
    owner.update({k: "void" for k in enc.void})
    total = sum(v.pixels for v in fp.values) or 1
    table = Table(title="mask values" if fp.mask_kind != "RGB" else "mask colours", title_justify="left")
    for col in ("raw", "pixels", "share", "files", "first file", "read as"):
        table.add_column(col, justify="right" if col in ("pixels", "share", "files") else "left")
    for v in fp.values[:VALUES_SHOWN]:
        key = int(v.key[1:3], 16) if fp.grey_colours else v.key
        table.add_row(markup_safe(v.key), f"{v.pixels:,}", f"{v.pixels / total:.1%}", str(v.files),
                      markup_safe(v.first[0]), markup_safe(owner.get(key, "?")))
    console.print(table)
    if len(fp.values) > VALUES_SHOWN:
        console.print(f"  ... and {len(fp.values) - VALUES_SHOWN} more (all of them in the study file)")


def _show_decisions(console: Console, plan) -> None:
    from automl.plan.render import yaml_value

    console.print("[bold]decisions[/] (each also a comment in the study file):")
    for d in plan.decisions:
        value = yaml_value(d.value if not isinstance(d.value, Path) else str(d.value))
        if len(value) > 100:
            value = value[:97] + "..."
        console.print(f"  [bold]{markup_safe(d.field)}[/] = {markup_safe(value)}", highlight=False)
        console.print(Padding(Text(visible(d.reason), style="dim"), (0, 0, 0, 6)))


def cmd_init(args: argparse.Namespace, console: Console) -> int:
    from automl.plan.encoding import parse_void
    from automl.plan.render import write_plan
    from automl.plan.study import plan_study

    root = Path(args.data)
    name = args.name or study_name(root)
    if _NAME.search(name):
        raise ConfigError(f"--name {markup_safe(name)!r}: use letters, digits and _ . - only")
    void = [parse_void(v) for v in args.void or []]
    study_path = Path("studies") / f"{name}.yaml"
    if study_path.exists() and not args.force:  # before reading every mask
        raise ConfigError(f"{study_path} already exists; pass --force to overwrite it, or --name to plan another study")
    fp = _fingerprint(root, console)
    plan = plan_study(fp, name=name, device=args.device, void=void)
    _show_found(console, plan)
    _show_decisions(console, plan)
    written = write_plan(plan, force=args.force)
    console.print("[bold]wrote[/] " + ", ".join(markup_safe(os.path.relpath(p)) for p in written), highlight=False)
    console.print(f"[bold]next:[/] {markup_safe(plan.run_command)}", highlight=False)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="plan a study from a dataset folder: writes studies/<name>.yaml")
    p.add_argument("data", help="the dataset folder: {train,val[,test]}/{images,masks}/ or images/ + masks/")
    p.add_argument("--name", help="study name (default: the folder's name)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="plan for this device (default: CUDA when a GPU is visible)")
    p.add_argument("--void", action="append", metavar="VALUE",
                   help="a raw mask value (e.g. 255) or colour (#rrggbb) to ignore; may be given more than once")
    p.add_argument("--force", action="store_true", help="overwrite an existing study file and search space")
    p.set_defaults(func=cmd_init)
