"""`automl audit`: class frequencies, sizes, label sanity and object positions of a dataset,
with plain-language findings and remedies; written to ``runs/<study>/audit/`` and attached to
the study for optuna-dashboard."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from automl.errors import ConfigError
from automl.terminal import markup_safe


def _dataset(args: argparse.Namespace):
    """(dataset, study file or None, output folder, source label)."""
    from automl.data.folder import load_dataset

    runs_root = Path(args.runs_root)
    if args.study:
        if args.classes or args.ignore_index is not None:
            raise ConfigError("--classes/--ignore-index describe a bare --data folder; a study file "
                              "already names its classes (data.classes, data.ignore_index)")
        from automl.config import load_study_file
        from automl.study.runner import load_data

        sf = load_study_file(args.study, overrides={"data.root": args.data} if args.data else None,
                             runs_root=runs_root)
        out = Path(args.out) if args.out else sf.run_dir / "audit"
        return load_data(sf), sf, out, f"{sf.name} ({sf.data_root.name}/)"
    if not args.data or not args.classes:
        raise ConfigError("give a study file, or --data DIR with --classes a,b,c [--ignore-index N]")
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    ignore = 255 if args.ignore_index is None else args.ignore_index
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ConfigError(f"--classes: need at least two distinct names, got {list(classes)}")
    if not len(classes) <= ignore <= 255:
        raise ConfigError(f"--ignore-index {ignore}: must be in {len(classes)}..255 (not a class index)")
    root = Path(args.data)
    out = Path(args.out) if args.out else runs_root / root.resolve().name / "audit"
    return load_dataset(root, classes, ignore, origin="--data"), None, out, f"{root.resolve().name}/"


def cmd_audit(args: argparse.Namespace, console: Console) -> int:
    from automl.diagnostics.audit import audit_dataset
    from automl.diagnostics.audit_report import write_report
    from automl.diagnostics.findings import findings, pct

    data, sf, out, source = _dataset(args)
    audit = audit_dataset(data, grid=args.grid)
    found = findings(audit)
    paths = write_report(audit, found, out, source, sf.data.pad_divisor if sf is not None else 32)

    table = Table(title=f"audit of {markup_safe(source)}")
    table.add_column("class")
    for name in audit.splits:
        table.add_column(f"{name} pixels", justify="right")
        table.add_column(f"{name} images", justify="right")
    for c, name in enumerate(audit.classes):
        table.add_row(markup_safe(name), *(v for s in audit.splits.values() for v in (pct(s.pixel_share[c]),
                                                                           pct(s.image_share[c]))))
    console.print(table)
    console.print(f"[bold]{len(found)} finding(s)[/]")
    for f in found:
        console.print(f"- {markup_safe(f.text)}\n  [dim]remedy:[/] {markup_safe(f.remedy)}", highlight=False)
    console.print(f"wrote {markup_safe(out / 'audit.md')} and {len(paths) - 1} heatmap PNG(s)", highlight=False)
    if sf is not None and not args.no_attach:
        from automl.diagnostics.publish import publish

        name = publish(sf, args.storage, "audit", paths, {"audit_findings": [str(f) for f in found]})
        console.print(f"attached {len(paths)} file(s) to study {name} (artifacts; user_attr audit_findings)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="audit a dataset: class frequencies, sizes, labels, object positions")
    p.add_argument("study", nargs="?", help="study file (studies/*.yaml); or use --data with --classes")
    p.add_argument("--data", help="dataset folder (overrides data.root, or audits a bare folder)")
    p.add_argument("--classes", help="comma-separated class names, for a bare --data folder")
    p.add_argument("--ignore-index", type=int, help="void label of a bare --data folder (default 255)")
    p.add_argument("--out", help="output folder (default runs/<study>/audit, or runs/<data folder>/audit)")
    p.add_argument("--grid", type=int, default=32, help="heatmap cells per side (default 32)")
    p.add_argument("--no-attach", action="store_true", help="do not upload the report to the study")
    p.add_argument("--storage", help="storage URL (overrides the study file); 'env:VAR' reads it from $VAR")
    p.add_argument("--runs-root", default="runs", help="folder holding runs/<study>/ (default: runs)")
    p.set_defaults(func=cmd_audit)
