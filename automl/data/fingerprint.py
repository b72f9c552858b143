"""What a dataset folder holds, read once before a study is planned (``automl init``).

The layout (ours, ``{train,val[,test]}/{images,masks}``; flat, ``images/`` + ``masks/``), the
pairs per split, image sizes and modes (from the file headers: no image is decoded), and the
masks' encoding: their kind (single-channel 8-bit, 16-bit, or RGB colours), and every raw value
or colour with its pixel count and the files holding it. Every mask is decoded once, in threads,
the way a search will decode it (:mod:`automl.data.decode`: EXIF orientation, alpha dropped, a
palette (P) mask read as its index plane, or as its colours when a palette file gives colours).

Facts only: what the values mean is decided by :mod:`automl.plan.encoding`. Every problem found
(pairing, unreadable files, mixed mask kinds, a mask whose size differs from its image's) is
listed in one DataError.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

from automl.config import check_root, colour_text
from automl.data import decode
from automl.data.folder import Pair, problem_listing, scan_pairs, unreadable_reason
from automl.data.palette import Palette, find_palette
from automl.errors import DataError

# What a mask's pixels are, by the array a search reads from it.
MASK_KINDS = {"8-bit": "single-channel 8-bit values", "16-bit": "single-channel 16-bit values",
              "RGB": "RGB colours"}
# How each image mode is read (automl.data.decode), in words.
IMAGE_MODES = {
    "L": "grey",
    "RGB": "RGB",
    "RGBA": "RGBA (alpha dropped)",
    "LA": "grey + alpha (alpha dropped)",
    "P": "palette (its colours)",
    "I;16": "16-bit grey (scaled to 8 bits: round(v × 255 / 65535))",
    "I;16B": "16-bit grey (scaled to 8 bits: round(v × 255 / 65535))",
    "I": "32-bit integer grey (taken as is up to 255, else scaled as 16-bit)",
    "F": "32-bit float (refused: save 8- or 16-bit integers)",
    "1": "1-bit",
    "CMYK": "CMYK (converted to RGB)",
}
# EXIF orientations that swap width and height (a photo stored sideways).
_TRANSPOSED = {5, 6, 7, 8}
FIRST_FILES = 3  # files named per raw value


@dataclass(frozen=True)
class RawValue:
    """One raw mask value (an int) or colour ("#rrggbb"), as found in the masks."""

    key: int | str
    pixels: int
    files: int
    first: tuple[str, ...]  # the first files holding it, relative to the root

    @property
    def grey(self) -> bool:
        return isinstance(self.key, int) or self.key[1:3] == self.key[3:5] == self.key[5:7]


@dataclass(frozen=True)
class Sizes:
    median: tuple[int, int]  # (H, W), upright
    smallest: tuple[int, int]  # (min H, min W)
    largest: tuple[int, int]  # (max H, max W)


@dataclass(frozen=True)
class Fingerprint:
    root: Path
    layout: str  # "folders" or "flat" (data.layout)
    splits: dict[str, int]  # pairs per split folder ("train" for a flat folder)
    sizes: Sizes
    image_modes: dict[str, int]  # PIL mode → images
    exif_rotated: int  # images with an EXIF orientation other than upright
    mask_kind: str  # a key of MASK_KINDS
    mask_modes: dict[str, int]  # PIL mode → masks
    values: tuple[RawValue, ...]  # sorted by key
    palette: Palette | None = None
    notes: tuple[str, ...] = field(default=())  # files that looked like a palette but are not

    @property
    def grey_colours(self) -> bool:
        """RGB masks with r = g = b in every pixel: single-channel values stored as RGB."""
        return self.mask_kind == "RGB" and all(v.grey for v in self.values)


def detect_layout(root: Path, origin: str = "") -> str:
    """``folders`` (``root/train/...``) or ``flat`` (``root/images`` + ``root/masks``)."""
    check_root(root, origin)
    ours, flat = (root / "train").is_dir(), (root / "images").is_dir() or (root / "masks").is_dir()
    if ours and flat:
        raise DataError(f"dataset {root.name}/ has both train/ and images/ or masks/: keep one layout, "
                        "train/{images,masks}/ (with val/ and test/ if any) or images/ + masks/")
    if ours or flat:
        return "folders" if ours else "flat"
    raise DataError(f"dataset {root.name}/ has neither train/ nor images/ + masks/. Expected "
                    f"{root.name}/train/{{images,masks}}/ (val/ and test/ alike, if any) or "
                    f"{root.name}/images/ + {root.name}/masks/ (masks with the same file stems as the images)")


@dataclass
class _FileFacts:
    image_mode: str | None = None
    image_size: tuple[int, int] | None = None
    rotated: bool = False
    mask_mode: str | None = None
    kind: str | None = None
    keys: np.ndarray | None = None
    counts: np.ndarray | None = None
    problems: list[str] = field(default_factory=list)


# Image modes whose pixels decide whether a search takes them (decode.image_array refuses floats
# and out-of-range integers): only these images are decoded here.
_CHECKED_MODES = {"F", "I"}


def _image_header(path: Path) -> tuple[str, tuple[int, int], bool]:
    with Image.open(path) as im:
        if im.mode in _CHECKED_MODES:
            decode.image_array(im)  # raises decode.Refused, saying why
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
        w, h = im.size
        return im.mode, ((w, h) if orientation in _TRANSPOSED else (h, w)), orientation not in (0, 1)


def _kind(raw: np.ndarray) -> str:
    return "RGB" if raw.ndim == 3 else "8-bit" if raw.dtype in (np.uint8, np.bool_) else "16-bit"


def _read(pair: Pair, colour_palette: bool) -> _FileFacts:
    facts = _FileFacts()
    try:
        facts.image_mode, facts.image_size, facts.rotated = _image_header(pair.image)
    except decode.Refused as exc:
        facts.problems.append(f"{pair.image_name}: {exc}")
    except Exception as exc:  # noqa: BLE001 - unreadable for any reason
        facts.problems.append(f"{pair.image_name}: {unreadable_reason(pair.image, exc)}")
    try:
        with Image.open(pair.mask) as im:
            facts.mask_mode = im.mode
            # a palette mask is read as its colours when a palette file gives colours, as the
            # study's colour label map will have it read
            kind = decode.RGB if im.mode == "P" and colour_palette else decode.mask_kind(im.mode, None)
            if kind is None:
                raise decode.Refused(f"mode {im.mode}; masks must be single-channel values or RGB colours")
            raw = decode.mask_raw(decode.upright(im), kind)
    except decode.Refused as exc:
        facts.problems.append(f"{pair.mask_name}: {exc}")
        return facts
    except Exception as exc:  # noqa: BLE001
        facts.problems.append(f"{pair.mask_name}: {unreadable_reason(pair.mask, exc)}")
        return facts
    facts.kind = _kind(raw)
    if raw.ndim == 3:
        raw = (raw[..., 0].astype(np.uint32) << 16) | (raw[..., 1].astype(np.uint32) << 8) | raw[..., 2]
    elif raw.dtype == np.bool_:
        raw = raw.astype(np.uint8)
    elif raw.size and (raw.min() < 0 or raw.max() > 65535):
        facts.problems.append(f"{pair.mask_name}: values outside 0..65535")
        return facts
    facts.keys, facts.counts = np.unique(raw, return_counts=True)
    if facts.image_size is not None and facts.image_size != raw.shape[:2]:
        (h, w), (mh, mw) = facts.image_size, raw.shape[:2]
        facts.problems.append(f"{pair.where}{pair.stem}: image {w}x{h} and mask {mw}x{mh} differ in size")
    return facts


def _key(value: int, kind: str) -> int | str:
    v = int(value)
    return colour_text((v >> 16 & 255, v >> 8 & 255, v & 255)) if kind == "RGB" else v


def _mixed_kinds(by_kind: dict[str, list[str]]) -> str:
    parts = [f"{MASK_KINDS[k]}: {len(files)} file(s) ({', '.join(files[:FIRST_FILES])}"
             f"{', ...' if len(files) > FIRST_FILES else ''})" for k, files in by_kind.items()]
    return ("masks mix encodings, " + "; ".join(parts) + ". Save every mask in one encoding (single-channel "
            "class values, 8- or 16-bit, or RGB colours)")


def fingerprint(root: Path, *, origin: str = "",
                on_progress: Callable[[int, int], None] | None = None) -> Fingerprint:
    """Read ``root`` once: layout, pairs, sizes, modes, the masks' encoding and every raw value.

    ``on_progress(done, total)`` is called as masks are read (the CLI draws a bar). Raises one
    DataError listing every problem found.
    """
    layout = detect_layout(root, origin)
    palette, notes = find_palette(root)
    pairs, problems = scan_pairs(root, ("train",), origin, layout)
    jobs = [p for plist in pairs.values() for p in plist]
    colour_palette = palette is not None and palette.has_colours
    results: list[_FileFacts] = []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for facts in pool.map(lambda pair: _read(pair, colour_palette), jobs):
            results.append(facts)
            if on_progress is not None:
                on_progress(len(results), len(jobs))
    for facts in results:
        problems.extend(facts.problems)
    by_kind: dict[str, list[str]] = {}
    for pair, facts in zip(jobs, results):
        if facts.kind is not None:
            by_kind.setdefault(facts.kind, []).append(pair.mask_name)
    if len(by_kind) > 1:
        problems.append(_mixed_kinds(by_kind))
    if problems:
        raise DataError(problem_listing(root, problems))
    kind = next(iter(by_kind))
    return Fingerprint(root=root, layout=layout, splits={s: len(p) for s, p in pairs.items()},
                       sizes=_sizes([f.image_size for f in results]), image_modes=_tally(f.image_mode for f in results),
                       exif_rotated=sum(f.rotated for f in results), mask_kind=kind,
                       mask_modes=_tally(f.mask_mode for f in results),
                       values=_values(jobs, results, kind), palette=palette, notes=tuple(notes))


def _tally(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _sizes(sizes: list[tuple[int, int]]) -> Sizes:
    hs, ws = [h for h, _ in sizes], [w for _, w in sizes]
    return Sizes(median=(int(statistics.median(hs)), int(statistics.median(ws))), smallest=(min(hs), min(ws)),
                 largest=(max(hs), max(ws)))


def _values(pairs: list[Pair], results: list[_FileFacts], kind: str) -> tuple[RawValue, ...]:
    pixels: dict[int, int] = {}
    files: dict[int, list[str]] = {}
    for pair, facts in zip(pairs, results):
        for value, count in zip(facts.keys.tolist(), facts.counts.tolist()):
            pixels[value] = pixels.get(value, 0) + count
            files.setdefault(value, []).append(pair.mask_name)
    return tuple(RawValue(_key(v, kind), pixels[v], len(files[v]), tuple(files[v][:FIRST_FILES]))
                 for v in sorted(pixels))
