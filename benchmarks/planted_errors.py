"""Does `automl inspect` find bad masks? Plant some and see where they rank.

    python -m benchmarks.planted_errors MODEL [--data /work/shared/datasets/camvid-small]
                                       [--split val] [--per-kind 2] [--kinds swap,shift,erase,empty]

MODEL is a study file (→ runs/<study>/best_trial), a model folder (best_trial) or a bundle.
The split's masks are corrupted in memory only (nothing on disk changes), ``per-kind`` images
per kind, picked at random (seeded):
  swap   the image's two largest classes exchange labels
  shift  the annotation moves right by 1/4 and down by 1/8 of the size (vacated band void)
  erase  every class but the largest is painted with the largest (objects left unlabelled)
  empty  every pixel void (an annotation that holds nothing)
Then every image is evaluated alone and ranked as `automl inspect` does; the table gives each
planted image's rank out of the split's size, and how many clean images were flagged.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from automl.data.folder import load_dataset  # noqa: E402
from automl.diagnostics.corrupt import CORRUPTIONS  # noqa: E402
from automl.diagnostics.model_source import resolve_model  # noqa: E402
from automl.diagnostics.per_sample import DEFAULT_THRESHOLD, SampleScorer, rank, score_split  # noqa: E402
from automl.trial.checkpoint import load_model  # noqa: E402
from automl.trial.engine import Runtime  # noqa: E402


def plant(masks: list[np.ndarray], kinds: list[str], per_kind: int, ignore: int, seed: int) -> dict[int, str]:
    """Corrupt ``per_kind`` masks per kind in place; return {image index: kind}."""
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(len(masks))]
    planted: dict[int, str] = {}
    for kind in kinds:
        for _ in range(per_kind):
            # swap needs two classes in the image; any other kind takes the next image
            i = next((i for i in order if i not in planted
                      and (kind != "swap" or len(set(np.unique(masks[i]).tolist()) - {ignore}) >= 2)), None)
            if i is None:
                raise SystemExit(f"not enough images left to plant {per_kind} x {kind}")
            masks[i] = CORRUPTIONS[kind](masks[i], ignore)
            planted[i] = kind
    return planted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="study file, model folder (best_trial) or bundle folder")
    ap.add_argument("--data", default="../shared/datasets/camvid-small")
    ap.add_argument("--split", default="val")
    ap.add_argument("--per-kind", type=int, default=2)
    ap.add_argument("--kinds", default="swap,shift,erase,empty")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--runs-root", default="runs")
    args = ap.parse_args(argv)
    console = Console(width=160)

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in CORRUPTIONS]
    if unknown:
        raise SystemExit(f"--kinds: unknown {unknown}; choose from {sorted(CORRUPTIONS)}")
    source = resolve_model(Path(args.model), runs_root=Path(args.runs_root))
    model, cfg, _ = load_model(source.model_dir)
    data = load_dataset(Path(args.data), cfg.data.classes, cfg.data.ignore_index, required=(args.split,))
    split = data.splits[args.split]
    planted = plant(split.masks, kinds, args.per_kind, cfg.data.ignore_index, args.seed)

    ranked = rank(score_split(SampleScorer(model, cfg, Runtime.resolve(args.device)), split), args.threshold)
    n = len(ranked)
    table = Table(title=f"{source.label} on {args.split}: where the planted errors rank (of {n})")
    for col in ("kind", "image", "rank", "score", "mIoU", "loss", "flagged"):
        table.add_column(col)
    for s in sorted((s for s in ranked if s.index in planted), key=lambda s: (kinds.index(planted[s.index]), s.rank)):
        table.add_row(planted[s.index], f"{args.split}/{s.stem}", f"{s.rank} / {n}", f"{s.score:.1f}",
                      f"{s.miou:.3f}", f"{s.loss:.3f}", "yes" if s.flagged else "no")
    console.print(table)
    ranks = sorted(s.rank for s in ranked if s.index in planted)
    clean_flagged = [s for s in ranked if s.flagged and s.index not in planted]
    hit = sum(1 for s in ranked if s.flagged and s.index in planted)
    console.print(f"planted {len(planted)}: ranks {ranks}; all within the top {ranks[-1]}; "
                  f"{hit} of {len(planted)} flagged; {len(clean_flagged)} clean image(s) flagged too"
                  + (": " + ", ".join(f"{args.split}/{s.stem} (#{s.rank})" for s in clean_flagged[:10])
                     if clean_flagged else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
