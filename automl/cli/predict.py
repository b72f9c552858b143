"""`automl predict`: masks for images with a bundle, written as 8-bit PNGs of class indices."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rich.console import Console

from automl.errors import AutoMLError

log = logging.getLogger(__name__)
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


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


def cmd_predict(args: argparse.Namespace, console: Console) -> int:
    import numpy as np
    from PIL import Image

    from automl.bundle import load_bundle

    paths = image_paths(args.images)
    if not paths:
        raise AutoMLError("no images given")
    predictor = load_bundle(args.bundle, backend=args.backend, precision=args.precision, tta=args.tta,
                            threads=args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for p in paths:
        with Image.open(p) as im:
            image = np.asarray(im.convert("RGB"))
        Image.fromarray(predictor.predict(image), mode="L").save(out / f"{p.stem}.png")
    console.print(f"{len(paths)} mask(s) written to {out} with {predictor.describe()}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict masks with a bundle (PNG, one class index per pixel)")
    p.add_argument("bundle", help="bundle folder written by `automl final`")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="folder for the masks (<image stem>.png)")
    p.add_argument("--backend", choices=["auto", "torch", "onnxruntime"], default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "int8"], default="auto")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="force TTA on/off (default: the bundle's decision)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads")
    p.set_defaults(func=cmd_predict)
