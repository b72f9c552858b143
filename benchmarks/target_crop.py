"""How much rare-class signal training crops carry, without and with the target-centred crop.

    python -m benchmarks.target_crop [--data ../shared/datasets/camvid-small] [--crop 128]
                                     [--passes 5] [--out runs/bench-target-crop]

Draws ``passes`` crops per training image through the same crop steps the trial pipeline uses
(PadIfNeeded + crop, no flips or colour: they do not move pixels between classes), for:
random crop (augment.target_crop = 0), target_crop = 0.5 and 1.0 (defaults: rarity 1, window
not kept inside), and target_crop = 1.0 with rarity 0 (uniform over the classes present), with
rarity 0.5, and with keep_inside. Rare classes are those
``automl audit`` calls rare (pixel share under a quarter of an even split), unless --rare names
them. Prints shares of labelled crop pixels; with --out also writes the position heatmaps of the
crops (random vs target-centred) next to the dataset's own.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from automl.data.folder import Split, load_dataset  # noqa: E402
from automl.data.target_crop import TargetCrop  # noqa: E402
from automl.diagnostics.audit import audit_dataset  # noqa: E402
from automl.diagnostics.findings import RARE_PIXEL_FACTOR, pct  # noqa: E402
from automl.diagnostics.heatmap import position_density, render_sheet  # noqa: E402
from automl.trial.augment import crop_step  # noqa: E402

CAMVID = "sky,building,pole,road,pavement,tree,signsymbol,fence,car,pedestrian,bicyclist"


def pipeline(crop: int, ignore: int, target_crop: float, options: dict | None) -> A.Compose:
    if options is None:
        step = crop_step(crop, crop, target_crop, ignore)
    else:
        step = TargetCrop(height=crop, width=crop, ignore_index=ignore, p=1.0, **options)
    pad = A.PadIfNeeded(min_height=crop, min_width=crop, border_mode=cv2.BORDER_CONSTANT, fill=0,
                        fill_mask=ignore, position="random")
    return A.Compose([pad, step])


def crops(split: Split, transform: A.Compose, passes: int, seed: int) -> list[np.ndarray]:
    transform.set_random_seed(seed)
    return [transform(image=img, mask=m)["mask"] for _ in range(passes) for img, m in zip(split.images, split.masks)]


def shares(masks: list[np.ndarray], k: int, ignore: int) -> tuple[np.ndarray, float]:
    counts = sum(np.bincount(m.ravel(), minlength=256) for m in masks)
    labelled = counts[:k].sum()
    return counts[:k] / max(1, labelled), counts[ignore] / max(1, counts.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/datasets/camvid-small")
    ap.add_argument("--classes", default=CAMVID)
    ap.add_argument("--ignore-index", type=int, default=11)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--passes", type=int, default=5, help="crops per training image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rare", help="comma-separated rare classes (default: from the audit)")
    ap.add_argument("--out", help="folder for crop position heatmaps")
    args = ap.parse_args()
    console = Console(width=200)

    classes = tuple(args.classes.split(","))
    k, ignore = len(classes), args.ignore_index
    data = load_dataset(Path(args.data), classes, ignore)
    audit = audit_dataset(data)
    if args.rare:
        rare = [classes.index(c) for c in args.rare.split(",")]
    else:
        rare = [c for c in range(k) if audit.train.pixel_share[c] < RARE_PIXEL_FACTOR / k]
    base = audit.train.pixel_share
    if not rare:
        raise SystemExit("no rare class in this dataset; name some with --rare")

    variants = [("random crop (target_crop 0)", 0.0, None), ("target_crop 0.5", 0.5, None),
                ("target_crop 1.0 (defaults)", 1.0, None), ("target_crop 1.0, rarity 0", 1.0, {"rarity": 0.0}),
                ("target_crop 1.0, rarity 0.5", 1.0, {"rarity": 0.5}),
                ("target_crop 1.0, keep_inside", 1.0, {"keep_inside": True})]
    table = Table(title=f"{Path(args.data).name}: {args.crop}x{args.crop} training crops, {args.passes} per image "
                        f"({args.passes * len(data.train)} crops); shares of labelled crop pixels")
    table.add_column("crops")
    table.add_column("all rare", justify="right")
    for c in rare:
        table.add_column(classes[c], justify="right")
    rarest = min(rare, key=lambda c: base[c])
    table.add_column(f"crops with {classes[rarest]}", justify="right")
    table.add_column("void+pad", justify="right")
    table.add_row("whole train images", pct(base[rare].sum()), *(pct(base[c]) for c in rare),
                  pct(audit.train.image_share[rarest]), pct(audit.train.void_share))
    densities = {}
    for name, p, options in variants:
        t0 = time.perf_counter()
        masks = crops(data.train, pipeline(args.crop, ignore, p, options), args.passes, args.seed)
        share, void = shares(masks, k, ignore)
        with_rarest = np.mean([(m == rarest).any() for m in masks])
        table.add_row(name, pct(share[rare].sum()), *(pct(share[c]) for c in rare), pct(with_rarest), pct(void))
        densities[name] = position_density(masks, k, ignore)
        console.log(f"{name}: {len(masks)} crops in {time.perf_counter() - t0:.1f}s")
    console.print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        render_sheet(audit.train.density, classes, heading="whole train images").save(out / "positions_images.png")
        for name, dens in densities.items():
            slug = name.split(" (")[0].replace(" ", "_").replace(",", "").replace(".", "")
            render_sheet(dens, classes, heading=f"{args.crop}px crops: {name}").save(out / f"positions_{slug}.png")
        console.print(f"position heatmaps in {out}")


if __name__ == "__main__":
    main()
