"""`automl predict`: masks for images with a bundle, written as 8-bit PNGs of class indices."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from automl.bundle.variants import ALL_PRECISIONS, BACKENDS
from automl.errors import AutoMLError

log = logging.getLogger(__name__)
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
SHOWN = 5  # file names listed in an error before "… (N in all)"


def image_paths(items: list[str]) -> list[Path]:
    """Files as given; folders expanded to their image files (sorted)."""
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
        elif p.is_file():
            paths.append(p)
        else:
            raise AutoMLError(f"{item}: no such image file or folder")
    stems = [p.stem for p in paths]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise AutoMLError(f"several images share the name(s) {dupes[:5]}: their masks would overwrite each other")
    return paths


def mask_path(out: Path, image: Path) -> Path:
    return out / f"{image.stem}.png"


def _names(paths: list[Path]) -> str:
    shown = ", ".join(p.name for p in paths[:SHOWN])
    return shown + (f", … ({len(paths)} in all)" if len(paths) > SHOWN else "")


def check_out(out: Path, items: list[str], paths: list[Path], overwrite: bool) -> None:
    """Refuse, before any model is loaded, an ``--out`` that would put masks over input images,
    or over earlier files unless ``overwrite``.

    Paths are compared resolved (symlinks, ``..``) and as files (hard links, case-insensitive
    file systems), so no spelling of the input folder gets past."""
    if out.exists() and not out.is_dir():
        raise AutoMLError(f"--out {out} is a file, not a folder")
    resolved = out.resolve()
    inputs = {(s.st_dev, s.st_ino) for s in map(os.stat, paths)}
    targets = [mask_path(out, p) for p in paths]
    over_inputs = [t for t in targets if t.exists() and (t.stat().st_dev, t.stat().st_ino) in inputs]
    beside = [p for p in paths if p.parent.resolve() == resolved]
    if over_inputs or beside or any(Path(i).is_dir() and Path(i).resolve() == resolved for i in items):
        clash = (f"the masks would overwrite the input image(s) {_names(over_inputs)}" if over_inputs else
                 f"it holds the input image(s) {_names(beside)}" if beside else "it is an input folder")
        raise AutoMLError(f"--out {out}: {clash}; choose another folder for the masks")
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise AutoMLError(f"--out {out} already holds {len(existing)} of the mask file(s) to write "
                          f"({_names(existing)}); pass --overwrite to replace them")


def unreadable_reason(path: Path, exc: Exception) -> str:
    """Pillow's exception as a plain reason."""
    from PIL import Image, UnidentifiedImageError

    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            return "empty file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (or a format Pillow cannot read)"
    if isinstance(exc, Image.DecompressionBombError):
        return "too many pixels (Pillow's decompression bomb limit)"
    if isinstance(exc, OSError) and "truncated" in str(exc):
        return "truncated file"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}".rstrip(": ")


def cmd_predict(args: argparse.Namespace, console: Console) -> int:
    import numpy as np
    from PIL import Image

    from automl.bundle import load_bundle

    paths = image_paths(args.images)
    if not paths:
        raise AutoMLError("no images given")
    out = Path(args.out)
    check_out(out, args.images, paths, args.overwrite)
    predictor = load_bundle(args.bundle, backend=args.backend, precision=args.precision, tta=args.tta,
                            threads=args.threads, model=args.model)
    out.mkdir(parents=True, exist_ok=True)
    skipped = 0
    for p in paths:
        try:
            with Image.open(p) as im:
                image = np.asarray(im.convert("RGB"))
        except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, ...
            skipped += 1
            console.print(f"skipped {escape(str(p))}: {escape(unreadable_reason(p, exc))}", highlight=False,
                          soft_wrap=True)
            continue
        # "x": a file that appeared since check_out is not overwritten either
        with mask_path(out, p).open("wb" if args.overwrite else "xb") as f:
            Image.fromarray(predictor.predict(image), mode="L").save(f, format="PNG")
    written = f"{len(paths) - skipped} mask(s) written to {escape(str(out))} with {predictor.describe()}"
    if skipped:
        console.print(f"{skipped} of {len(paths)} images could not be read; {written}", highlight=False,
                      soft_wrap=True)
        return 1
    console.print(written, highlight=False, soft_wrap=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict masks with a bundle (PNG, one class index per pixel)")
    p.add_argument("bundle", help="bundle folder written by `automl final`")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="folder for the masks (<image stem>.png); not an input folder")
    p.add_argument("--overwrite", action="store_true", help="replace masks already in --out")
    p.add_argument("--backend", choices=["auto", *BACKENDS], default="auto")
    p.add_argument("--precision", choices=["auto", *ALL_PRECISIONS], default="auto")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="force TTA on/off (default: the bundle's decision)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads")
    p.add_argument("--model", choices=["auto", "teacher", "student"], default="auto",
                   help="with a distilled student in the bundle: which model (auto: the bundle's default)")
    p.set_defaults(func=cmd_predict)
