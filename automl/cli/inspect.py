"""`automl inspect`: evaluate a trained model on every image of a split alone, rank the images,
flag robust outliers (likely polluted or mislabeled masks) and write a ranked CSV with overlays."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from automl.errors import ConfigError
from automl.terminal import markup_safe


def _load(args: argparse.Namespace):
    """(model, trial config, dataset, study file or None, model source)."""
    from automl.config import load_study_file
    from automl.data.folder import load_dataset
    from automl.diagnostics.model_source import resolve_model
    from automl.study.runner import load_data
    from automl.trial.checkpoint import load_model

    runs_root = Path(args.runs_root)
    overrides = {"data.root": args.data} if args.data else None
    source = resolve_model(Path(args.target), runs_root=runs_root, overrides=overrides, storage=args.storage)
    sf = source.study
    if sf is None and args.study:
        sf = load_study_file(args.study, overrides=overrides, runs_root=runs_root)
    model, cfg, _ = load_model(source.model_dir)
    if sf is not None:
        data = load_data(sf)
    elif args.data:
        # the model's own label map: masks in their original encoding decode as it was trained
        data = load_dataset(Path(args.data), cfg.data.classes, cfg.data.ignore_index, required=(args.split,),
                            origin="--data", label_map=cfg.data.label_map)
    else:
        raise ConfigError(f"{args.target}: a model folder or bundle needs --data DIR (or --study FILE) to know "
                          "which images to inspect")
    if (tuple(data.classes), data.ignore_index) != (cfg.data.classes, cfg.data.ignore_index):
        raise ConfigError(f"the model was trained on classes {list(cfg.data.classes)} (void {cfg.data.ignore_index}) "
                          f"but the data has {list(data.classes)} (void {data.ignore_index})")
    if args.split not in data.splits:
        raise ConfigError(f"split {args.split!r} not in the data (found: {', '.join(data.splits)})")
    return model, cfg, data, sf, source


def cmd_inspect(args: argparse.Namespace, console: Console) -> int:
    from automl.diagnostics.inspection import fmt_score, inspect_split
    from automl.trial.engine import Runtime

    model, cfg, data, sf, source = _load(args)
    if args.out:
        out = Path(args.out)
    elif sf is not None:
        out = sf.run_dir / "inspect" / args.split
    else:
        out = Path(args.runs_root) / source.label / "inspect" / args.split
    runtime = Runtime.resolve(args.device)
    result = inspect_split(model, cfg, data.splits[args.split], runtime, out, worst=args.worst,
                           threshold=args.threshold, source=source.label)

    table = Table(title=f"{markup_safe(source.label)} on {markup_safe(args.split)}: worst images of {len(result.ranked)}")
    for col in ("rank", "image", "mIoU", "loss", "flagged because"):
        table.add_column(col)
    for s in result.ranked[:max(args.worst, len(result.flagged))]:
        table.add_row(str(s.rank), markup_safe(f"{args.split}/{s.stem}"), fmt_score(s.miou), fmt_score(s.loss),
                      markup_safe(s.reason))
    console.print(table)
    console.print(f"{len(result.flagged)} image(s) flagged; ranking and overlays in {markup_safe(out)}", highlight=False)
    if sf is not None and not args.no_attach:
        from automl.diagnostics.publish import publish

        name = publish(sf, args.storage, f"inspect_{args.split}", result.files,
                       {f"inspect_{args.split}_flagged": [f"{args.split}/{s.stem}: {s.reason}" for s in result.flagged]})
        console.print(f"attached {len(result.files)} file(s) to study {name} "
                      f"(artifacts; user_attr inspect_{args.split}_flagged)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="rank the images of a split by how badly a trained model does on each "
                                       "(finds polluted or mislabeled masks)")
    p.add_argument("target", help="study file (uses runs/<study>/best_trial), model folder, or bundle folder")
    p.add_argument("--split", default="val", help="split to inspect (default val)")
    p.add_argument("--data", help="dataset folder (overrides data.root; required for a model folder or bundle "
                                  "without --study)")
    p.add_argument("--study", help="study file to attach the results to, when TARGET is a model folder or bundle")
    p.add_argument("--worst", type=int, default=8, help="overlay PNGs for the K worst images (default 8)")
    p.add_argument("--threshold", type=float, default=3.5, help="modified z-score above which an image is "
                                                                "flagged (default 3.5)")
    p.add_argument("--out", help="output folder (default runs/<study>/inspect/<split>)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--no-attach", action="store_true", help="do not upload the results to the study")
    p.add_argument("--storage", help="storage URL (overrides the study file); 'env:VAR' reads it from $VAR")
    p.add_argument("--runs-root", default="runs", help="folder holding runs/<study>/ (default: runs)")
    p.set_defaults(func=cmd_inspect)
