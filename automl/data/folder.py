"""A dataset folder ``root/{train,val[,test]}/{images,masks}/``, validated and decoded once
(a study may carve its val from train/ instead: :mod:`automl.data.split`).

Masks hold one class index per pixel (8-bit PNG/TIFF, same stem as the image). Everything is
checked before any training starts, and every offending file is listed in one error. The
decoded uint8 arrays stay in memory for the whole search: no file is decoded twice.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from automl.config import check_root
from automl.errors import DataError
from automl.terminal import visible

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
MASK_EXTS = {".png", ".tif", ".tiff", ".bmp"}
SPLITS = ("train", "val", "test")


@dataclass
class Split:
    name: str
    stems: list[str]
    images: list[np.ndarray]  # H×W×3 uint8
    masks: list[np.ndarray]   # H×W uint8 class indices
    # Per image (H, W), taken once when the split is built: the input size reads the holdout's
    # sizes without touching its pixels or labels.
    shapes: list[tuple[int, int]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.shapes is None:
            self.shapes = [None if m is None else m.shape for m in self.masks]  # None: not decoded

    def __len__(self) -> int:
        return len(self.stems)

    @property
    def sizes(self) -> set[tuple[int, int]]:
        return set(self.shapes)


@dataclass
class Dataset:
    """``val`` is the selection split: every trial, the TTA and the INT8 decisions score on it.
    ``holdout`` (``splits[holdout_key]``, when there is one) is scored once, by the shipped model,
    after every decision (:mod:`automl.data.split` assigns the roles)."""

    classes: tuple[str, ...]
    ignore_index: int
    splits: dict[str, Split] = field(default_factory=dict)
    holdout_key: str | None = None
    # where each role came from, for logs and reports: {"val": "val/", "holdout": "test/", ...}
    sources: dict[str, str] = field(default_factory=dict)
    # the split as recorded on the study (automl.data.split.split_record)
    record: dict | None = None

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def val(self) -> Split:
        return self.splits["val"]

    @property
    def test(self) -> Split | None:
        """The folder's test/ split under its own name (a carved split renames it ``holdout``)."""
        return self.splits.get("test")

    @property
    def holdout(self) -> Split | None:
        return None if self.holdout_key is None else self.splits[self.holdout_key]

    def max_size(self) -> tuple[int, int]:
        sizes = [s for split in self.splits.values() for s in split.sizes]
        return max(h for h, _ in sizes), max(w for _, w in sizes)


@dataclass
class _Pair:
    stem: str
    image: Path
    mask: Path


# A study can do without val/: data.val_fraction carves one from train/.
VAL_REMEDY = "; add one, or set data.val_fraction (e.g. 0.2) in the study file to carve it from train/"

LISTED_MAX = 200  # problems shown in one error; the count says how many more


def _pad_up(x: int, divisor: int) -> int:
    return -(-x // divisor) * divisor


def padded_size(size: tuple[int, int], divisor: int) -> tuple[int, int]:
    return _pad_up(size[0], divisor), _pad_up(size[1], divisor)


def _files(folder: Path, exts: set[str], problems: list[str], where: str) -> dict[str, Path]:
    """Files by stem; two files with one stem (a.png and a.jpg) are a problem, not a silent pick."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not (p.is_file() and p.suffix.lower() in exts):
            continue
        if p.stem in out:
            problems.append(f"{where}/{p.name}: same stem as {out[p.stem].name}; keep one of them")
            continue
        out[p.stem] = p
    return out


def scan(root: Path, *, required: tuple[str, ...] = ("train", "val"), origin: str = "") -> dict[str, list[_Pair]]:
    """Pair images with masks per split; raise one DataError listing every problem."""
    found, problems = _scan(root, required, origin)
    if problems:
        raise DataError(_listing(root, problems))
    return found


def _scan(root: Path, required: tuple[str, ...], origin: str = "") -> tuple[dict[str, list[_Pair]], list[str]]:
    """The pairs found per split, and every pairing problem (the pairs are still usable).
    ``origin`` says where ``root`` came from (``--data``), for the error when it is missing."""
    problems: list[str] = []
    check_root(root, origin)
    found: dict[str, list[_Pair]] = {}
    for split in SPLITS:
        sdir = root / split
        if not sdir.is_dir():
            if split in required:
                problems.append(f"{split}/: missing split folder" + (VAL_REMEDY if split == "val" else ""))
            continue
        idir, mdir = sdir / "images", sdir / "masks"
        missing = [d.name for d in (idir, mdir) if not d.is_dir()]
        if missing:
            problems.extend(f"{split}/{d}/: missing folder" for d in missing)
            continue
        images = _files(idir, IMAGE_EXTS, problems, f"{split}/images")
        masks = _files(mdir, MASK_EXTS, problems, f"{split}/masks")
        problems += [f"{split}/images/{images[s].name}: no mask with this stem" for s in images if s not in masks]
        problems += [f"{split}/masks/{masks[s].name}: no image with this stem" for s in masks if s not in images]
        lossy = [p for p in mdir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg"}]
        problems += [f"{split}/masks/{p.name}: JPEG masks are lossy; save masks as PNG" for p in lossy]
        pairs = [_Pair(s, images[s], masks[s]) for s in images if s in masks]
        if not pairs:
            problems.append(f"{split}/: no image/mask pairs")
        found[split] = pairs
    return found, problems


def _listing(root: Path, problems: list[str]) -> str:
    # File names may hold escape sequences: the message shows them as \x1b, never raw.
    head = f"dataset {visible(root.name)}/ has {len(problems)} problem(s):"
    shown = problems[:LISTED_MAX]
    more = [f"  ... and {len(problems) - LISTED_MAX} more"] if len(problems) > LISTED_MAX else []
    return "\n".join([head, *(f"  {visible(p)}" for p in shown), *more])


# What an image file starts with, per format: a file that starts like one (or is a prefix of
# one) but cannot be read was cut short.
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*", b"RIFF", b"GIF8")


def _unreadable(path: Path, exc: Exception) -> str:
    """Why ``path`` could not be decoded, in words where the cause is plain."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as err:
        return f"unreadable ({err.strerror or type(err).__name__})"
    if size == 0:
        return "empty file (0 bytes)"
    known = any(head.startswith(sig) or sig.startswith(head) for sig in _SIGNATURES)
    if "truncated" in str(exc).lower() or (known and isinstance(exc, UnidentifiedImageError)):
        return f"truncated file ({size} bytes)"
    return f"unreadable ({type(exc).__name__})"


def _decode(pair: _Pair, split: str, n_classes: int, ignore_index: int) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
    problems = []
    img = mask = None
    try:
        with Image.open(pair.image) as im:
            img = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001 - unreadable for any reason
        problems.append(f"{split}/images/{pair.image.name}: {_unreadable(pair.image, exc)}")
    try:
        with Image.open(pair.mask) as im:
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                problems.append(f"{split}/masks/{pair.mask.name}: mode {im.mode}; masks must be single-channel "
                                "class indices")
            else:
                raw = np.asarray(im)
                if raw.max(initial=0) > 255:
                    problems.append(f"{split}/masks/{pair.mask.name}: label values above 255")
                mask = raw.astype(np.uint8)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"{split}/masks/{pair.mask.name}: {_unreadable(pair.mask, exc)}")
    if img is not None and mask is not None:
        if img.shape[:2] != mask.shape:
            problems.append(f"{split}/{pair.stem}: image {img.shape[1]}x{img.shape[0]} and mask "
                            f"{mask.shape[1]}x{mask.shape[0]} differ in size")
        labels = np.unique(mask)
        bad = [int(v) for v in labels if v >= n_classes and v != ignore_index]
        if bad:
            problems.append(f"{split}/masks/{pair.mask.name}: labels {bad[:8]} are neither a class "
                            f"(0..{n_classes - 1}) nor the ignore index {ignore_index}")
    return img, mask, problems


def load_dataset(root: Path, classes: tuple[str, ...], ignore_index: int,
                 *, required: tuple[str, ...] = ("train", "val"), origin: str = "") -> Dataset:
    """Scan, validate and decode every split into memory (threads: PIL releases the GIL). Pairing
    problems do not stop the decode of the pairs found: one error lists every problem at once.
    ``origin``: where ``root`` came from (``--data``), named when the folder is missing."""
    pairs, problems = _scan(root, required, origin)
    ds = Dataset(classes=tuple(classes), ignore_index=ignore_index)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for split, plist in pairs.items():
            results = list(pool.map(lambda p, s=split: _decode(p, s, len(classes), ignore_index), plist))
            for _, _, probs in results:
                problems.extend(probs)
            ds.splits[split] = Split(split, [p.stem for p in plist], [r[0] for r in results], [r[1] for r in results])
    if problems:
        raise DataError(_listing(root, problems))
    return ds
