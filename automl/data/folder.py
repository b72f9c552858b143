"""A dataset folder, validated and decoded once: ``root/{train,val[,test]}/{images,masks}/``
(``data.layout: folders``), or ``root/{images,masks}/``, all of it train (``flat``). A study may
carve its val from train instead (:mod:`automl.data.split`).

A mask has the image's stem (PNG/TIFF/BMP). Without ``data.label_map`` it holds one class
index per pixel (single-channel, 8-bit, or 16-bit with values up to 255); with one, its raw
values or colours are mapped to classes as each file is decoded (:mod:`automl.data.label_map`),
and nothing on disk is rewritten. How each image and mask mode is read (grayscale, alpha,
16-bit, EXIF orientation): :mod:`automl.data.decode`.

Everything is checked before any training starts, and every problem is listed in one error:
per file, and over the whole dataset (masks of mixed encodings; each raw value or colour the
map does not cover, with its pixel count and the first files that hold it). The decoded uint8
arrays stay in memory for the whole search, or, for large data, in the decoded-data cache on
local disk that every process maps (:mod:`automl.data.cache`): no file is decoded twice.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from automl.config import LabelMap, check_root
from automl.data.cache import ArraySeq, CacheReport, CacheSpec, DecodedCache, Entry, decoded_bytes, record_shape
from automl.data.decode import RGB, SINGLE, Refused, expected_kind, read_image, read_raw_mask
from automl.data.label_map import decode_mask, describe
from automl.errors import DataError
from automl.terminal import visible

log = logging.getLogger(__name__)
SIZE_SAMPLE = 64  # image headers read to estimate a dataset's decoded size

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
MASK_EXTS = {".png", ".tif", ".tiff", ".bmp"}
SPLITS = ("train", "val", "test")
# Each split's folder (holding images/ and masks/), per data.layout.
LAYOUTS: dict[str, Callable[[Path], dict[str, Path]]] = {
    "folders": lambda root: {split: root / split for split in SPLITS},
    "flat": lambda root: {"train": root},
}


@dataclass
class Split:
    name: str
    stems: list[str]
    # H×W×3 uint8 images and H×W uint8 class-index masks: lists of arrays in memory, or
    # ArraySeq (automl.data.cache) of mapped records; either is indexed the same way
    images: Sequence[np.ndarray]
    masks: Sequence[np.ndarray]
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
    # what opening the decoded-data cache did (None: no cache used)
    cache: CacheReport | None = None

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
class Pair:
    stem: str
    image: Path
    mask: Path
    where: str = ""  # the split's folder relative to the root, for messages: "train/" ("" when flat)

    @property
    def image_name(self) -> str:
        return f"{self.where}images/{self.image.name}"

    @property
    def mask_name(self) -> str:
        return f"{self.where}masks/{self.mask.name}"


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


def scan(root: Path, *, required: tuple[str, ...] = ("train", "val"), origin: str = "",
         layout: str = "folders") -> dict[str, list[Pair]]:
    """Pair images with masks per split; raise one DataError listing every problem."""
    found, problems = scan_pairs(root, required, origin, layout)
    if problems:
        raise DataError(problem_listing(root, problems))
    return found


def scan_pairs(root: Path, required: tuple[str, ...], origin: str = "",
               layout: str = "folders") -> tuple[dict[str, list[Pair]], list[str]]:
    """The pairs found per split, and every pairing problem (the pairs are still usable).
    ``origin`` says where ``root`` came from (``--data``), for the error when it is missing."""
    problems: list[str] = []
    check_root(root, origin)
    found: dict[str, list[Pair]] = {}
    for split, sdir in LAYOUTS[layout](root).items():
        where = "" if sdir == root else f"{split}/"
        if not sdir.is_dir():
            if split in required:
                problems.append(f"{split}/: missing split folder" + (VAL_REMEDY if split == "val" else ""))
            continue
        idir, mdir = sdir / "images", sdir / "masks"
        missing = [d.name for d in (idir, mdir) if not d.is_dir()]
        if missing:
            problems.extend(f"{where}{d}/: missing folder" for d in missing)
            continue
        images = _files(idir, IMAGE_EXTS, problems, f"{where}images")
        masks = _files(mdir, MASK_EXTS, problems, f"{where}masks")
        problems += [f"{where}images/{images[s].name}: no mask with this stem" for s in images if s not in masks]
        problems += [f"{where}masks/{masks[s].name}: no image with this stem" for s in masks if s not in images]
        lossy = [p for p in mdir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg"}]
        problems += [f"{where}masks/{p.name}: JPEG masks are lossy; save masks as PNG" for p in lossy]
        pairs = [Pair(s, images[s], masks[s], where) for s in images if s in masks]
        if not pairs:
            problems.append(f"{where or 'images/ and masks/'}: no image/mask pairs")
        found[split] = pairs
    return found, problems


def problem_listing(root: Path, problems: list[str]) -> str:
    # File names may hold escape sequences: the message shows them as \x1b, never raw.
    head = f"dataset {visible(root.name)}/ has {len(problems)} problem(s):"
    shown = problems[:LISTED_MAX]
    more = [f"  ... and {len(problems) - LISTED_MAX} more"] if len(problems) > LISTED_MAX else []
    return "\n".join([head, *(f"  {visible(p)}" for p in shown), *more])


# What an image file starts with, per format: a file that starts like one (or is a prefix of
# one) but cannot be read was cut short.
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*", b"RIFF", b"GIF8")


def unreadable_reason(path: Path, exc: Exception) -> str:
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


@dataclass
class _Decoded:
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    problems: list[str] = field(default_factory=list)
    kind: str | None = None     # the mask's encoding as read (decode.SINGLE or decode.RGB)
    unknown: dict = field(default_factory=dict)  # raw value or colour the label map lacks → pixels


def _decode(pair: Pair, n_classes: int, ignore_index: int, label_map: LabelMap | None) -> _Decoded:
    """One pair: the image, the mask decoded through ``label_map`` (only when its encoding is the
    one the map reads; the dataset-wide check names the others), and the per-file problems."""
    out = _Decoded()
    try:
        out.image = read_image(pair.image)
    except Refused as why:
        out.problems.append(f"{pair.image_name}: {why}")
    except MemoryError:  # the process's, not the file's: load_dataset says so once
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable for any reason
        out.problems.append(f"{pair.image_name}: {unreadable_reason(pair.image, exc)}")
    try:
        out.kind, raw = read_raw_mask(pair.mask, label_map)
        if out.kind == expected_kind(label_map):
            out.mask, out.unknown = decode_mask(raw, label_map, n_classes, ignore_index)
    except Refused as why:
        out.problems.append(f"{pair.mask_name}: {why}")
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001
        out.problems.append(f"{pair.mask_name}: {unreadable_reason(pair.mask, exc)}")
    if out.image is not None and out.mask is not None and out.image.shape[:2] != out.mask.shape:
        out.problems.append(f"{pair.where}{pair.stem}: image {out.image.shape[1]}x{out.image.shape[0]} and mask "
                            f"{out.mask.shape[1]}x{out.mask.shape[0]} differ in size")
    if label_map is None and out.unknown:  # no map: a mask holds class indices, and says which are wrong
        bad = sorted(out.unknown)
        out.problems.append(
            f"{pair.mask_name}: label values above 255 {bad[:8]}; map a 16-bit mask's values to classes with "
            "data.label_map.values" if bad[-1] > 255 else
            f"{pair.mask_name}: labels {bad[:8]} are neither a class (0..{n_classes - 1}) nor the ignore index "
            f"{ignore_index}")
    return out


def _few(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _encoding_problem(decoded: list[tuple[Pair, _Decoded]], label_map: LabelMap | None) -> list[str]:
    """One line when masks are not all of the encoding ``label_map`` reads: mixed, or all the other."""
    names = {RGB: [p.mask_name for p, d in decoded if d.kind == RGB],
             SINGLE: [p.mask_name for p, d in decoded if d.kind == SINGLE]}
    expected = expected_kind(label_map)
    other = RGB if expected == SINGLE else SINGLE
    if not names[other]:
        return []
    if names[expected]:
        fewer = min((other, expected), key=lambda k: len(names[k]))
        return [f"mixed mask encodings: {len(names[RGB])} RGB, {len(names[SINGLE])} single-channel; the masks of "
                f"one dataset share one encoding. The {fewer} ones: {_few(names[fewer])}"]
    found = f"({len(names[other])} files, e.g. {names[other][0]})"
    if other == RGB:
        given = "" if label_map is None else " but data.label_map gives values"
        return [f"masks are RGB colour-coded {found}{given}: map each colour to a class with data.label_map.colors"]
    return [f"masks are single-channel {found} but data.label_map gives colors: map their raw values to classes "
            "with data.label_map.values"]


def _unknown_problems(decoded: list[tuple[Pair, _Decoded]], label_map: LabelMap) -> list[str]:
    """One line per raw value or colour the map lacks, over the whole dataset: its pixel count and
    the first files that hold it; the most frequent first."""
    seen: dict[int | str, tuple[int, list[str]]] = {}
    for pair, d in decoded:
        for key, count in d.unknown.items():
            total, files = seen.get(key, (0, []))
            seen[key] = (total + count, [*files, pair.mask_name])
    what = "raw value" if label_map.kind == "values" else "colour"
    return [f"data.label_map.{label_map.kind} does not map {what} {key}: {total} pixels in {_few(files)}; map it "
            "to a class, or list it in data.label_map.void"
            for key, (total, files) in sorted(seen.items(), key=lambda kv: -kv[1][0])]


def load_dataset(root: Path, classes: tuple[str, ...], ignore_index: int,
                 *, required: tuple[str, ...] = ("train", "val"), origin: str = "",
                 label_map: LabelMap | None = None, layout: str = "folders",
                 cache: CacheSpec | None = None) -> Dataset:
    """Scan, validate and decode every split (threads: PIL releases the GIL). Pairing problems do
    not stop the decode of the pairs found: one error lists every problem at once.
    ``origin``: where ``root`` came from (``--data``), named when the folder is missing;
    ``label_map``: ``data.label_map`` (None: masks hold class indices); ``layout``: ``data.layout``;
    ``cache``: the decoded-data cache (:mod:`automl.data.cache`) when the data is at least its
    size threshold: records are reused, and the splits map them instead of holding arrays."""
    pairs, problems = scan_pairs(root, required, origin, layout)
    if label_map is not None:
        log.info("masks decoded through data.label_map: %s", describe(label_map))
    ds = Dataset(classes=tuple(classes), ignore_index=ignore_index)
    ids = {f"{split}/{p.stem}": p for split, plist in pairs.items() for p in plist}

    def decode(pair: Pair) -> tuple:
        d = _decode(pair, len(classes), ignore_index, label_map)
        return d.image, d.mask, d

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        store = _cache_for(cache, list(ids.values()), root, layout, label_map)
        if store is None:
            try:
                got = dict(zip(ids, pool.map(decode, ids.values())))
            except MemoryError:
                raise DataError(f"dataset {visible(root.name)}/: out of memory while decoding its {len(ids)} "
                                "images into this process; set data.cache: on to decode them once to local disk "
                                "and map them from there (a dataset larger than memory trains)") from None
        else:
            got, ds.cache = store.open([Entry(pid, p.image, p.mask) for pid, p in ids.items()],
                                       lambda e: decode(ids[e.pair_id]), pool.map)
            log.info("%s", ds.cache.line())
    reused = _Decoded(kind=expected_kind(label_map))  # a cached record was valid when it was written
    everything: list[tuple[Pair, _Decoded]] = []
    for split, plist in pairs.items():
        rows = [got[f"{split}/{p.stem}"] for p in plist]
        for p, (_, _, d) in zip(plist, rows):
            problems.extend((d or reused).problems)
            everything.append((p, d or reused))
        images, masks = ArraySeq([r[0] for r in rows]), ArraySeq([r[1] for r in rows])
        ds.splits[split] = Split(split, [p.stem for p in plist], images if images.on_disk else list(images.items),
                                 masks if masks.on_disk else list(masks.items),
                                 [_shape(r[1]) for r in rows])
    problems += _encoding_problem(everything, label_map)
    if label_map is not None:
        problems += _unknown_problems(everything, label_map)
    if problems:
        raise DataError(problem_listing(root, problems))
    return ds


def _shape(mask: np.ndarray | Path | None) -> tuple[int, int] | None:
    """A mask's (H, W), from the array or a record's header (the pixels stay unread)."""
    if mask is None:
        return None
    return tuple(record_shape(mask)) if isinstance(mask, Path) else mask.shape


def _cache_for(cache: CacheSpec | None, pairs: list[Pair], root: Path, layout: str,
               label_map: LabelMap | None) -> DecodedCache | None:
    """The cache to use, or None: no cache asked for, or the data under its size threshold."""
    if cache is None:
        return None
    if cache.from_bytes > 0:
        step = max(1, len(pairs) // SIZE_SAMPLE)
        sizes = [s for p in pairs[::step] if (s := _image_size(p.image)) is not None]
        need = decoded_bytes(sizes, len(pairs))
        if need < cache.from_bytes:
            log.info("data cache not used: %.2f GB decoded, under %.1f GB (data.cache: auto on a CPU); the "
                     "arrays stay in this process's memory", need / 1e9, cache.from_bytes / 1e9)
            return None
    return DecodedCache(cache.base, root, layout, None if label_map is None else label_map.model_dump())


def _image_size(path: Path) -> tuple[int, int] | None:
    """(H, W) from the file's header (PIL reads no pixels for it); None when unreadable."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except Exception:  # noqa: BLE001 - the decode reports it
        return None
