"""One image or mask file → a numpy array, the same way for every file of a dataset.

Images become H×W×3 uint8 RGB:

- grayscale (L) is repeated to three channels; LA and RGBA lose their alpha channel (it is
  dropped, not blended), and palette (P) images take their palette's colours;
- 16-bit images (I;16, I;16B, ..., or 32-bit I with values above 255) are scaled to 8 bits by
  ``round(value * 255 / 65535)``: 0 → 0, 65535 → 255, the full 16-bit range kept, no per-image
  contrast stretch; an I image with values all in 0..255 is taken as it is;
- floating-point images (F) and values outside 0..65535 are refused, the file named.

Masks are read as one of two encodings (:data:`SINGLE`, :data:`RGB`): single-channel (L, I;16,
I, 1, LA without its alpha) holds raw values, RGB (or RGBA without its alpha) holds colours.
A palette (P) mask is single-channel, its index plane, unless ``data.label_map`` gives colours:
then its palette colours are read. :mod:`automl.data.label_map` maps the raw values to classes.

Image and mask get the same EXIF orientation treatment (``PIL.ImageOps.exif_transpose``): a
photo stored sideways with an Orientation tag is turned upright, a file without one is
unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps

from automl.config import RAW_VALUE_MAX, LabelMap

SINGLE = "single-channel"
RGB = "RGB"
_SINGLE_MODES = {"L", "LA", "I", "1", "I;16", "I;16L", "I;16B", "I;16N"}
_RGB_MODES = {"RGB", "RGBA", "RGBX"}


class Refused(Exception):
    """A file that opens but whose pixels this package does not take; the message says why."""


def upright(im: Image.Image) -> Image.Image:
    """``im`` turned as its EXIF Orientation tag says; ``im`` itself when it has none."""
    if im.getexif().get(ExifTags.Base.Orientation, 1) in (0, 1):
        return im
    return ImageOps.exif_transpose(im)


def scale_16bit(values: np.ndarray) -> np.ndarray:
    """0..65535 → 0..255 uint8 by ``round(value * 255 / 65535)`` (value / 257: never a half)."""
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def image_array(im: Image.Image) -> np.ndarray:
    """H×W×3 uint8 RGB by the rules in the module docstring; :class:`Refused` otherwise."""
    if im.mode == "F":
        raise Refused("32-bit floating-point image (mode F); save it with 8- or 16-bit integer pixels")
    if im.mode == "I" or im.mode.startswith("I;16"):
        v = np.asarray(im)
        if v.size and (v.min() < 0 or v.max() > RAW_VALUE_MAX):
            raise Refused(f"mode {im.mode} with values outside 0..{RAW_VALUE_MAX}; save it as 8- or 16-bit")
        grey = v.astype(np.uint8) if im.mode == "I" and v.max(initial=0) <= 255 else scale_16bit(v)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def read_image(path: Path) -> np.ndarray:
    """The image file at ``path``, upright, as H×W×3 uint8 RGB."""
    with Image.open(path) as im:
        return image_array(upright(im))


def mask_kind(mode: str, label_map: LabelMap | None) -> str | None:
    """:data:`SINGLE` or :data:`RGB` for a mask of PIL ``mode``; None: neither (refused)."""
    if mode == "P":
        return expected_kind(label_map)
    return SINGLE if mode in _SINGLE_MODES else RGB if mode in _RGB_MODES else None


def expected_kind(label_map: LabelMap | None) -> str:
    """The encoding ``label_map`` decodes (no map: single-channel class indices)."""
    return RGB if label_map is not None and label_map.kind == "colors" else SINGLE


def mask_raw(im: Image.Image, kind: str) -> np.ndarray:
    """H×W raw values (uint8, uint16, int32 or bool) or H×W×3 uint8 colours, alpha dropped."""
    if kind == RGB:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    raw = np.asarray(im)  # a palette mask: the index plane, not its colours
    return raw[..., 0] if raw.ndim == 3 else raw


def read_raw_mask(path: Path, label_map: LabelMap | None = None) -> tuple[str, np.ndarray]:
    """The mask file at ``path``, upright: its encoding and its raw values or colours (a palette
    mask read as ``label_map`` expects). :class:`Refused` for a mode that is neither."""
    with Image.open(path) as im:
        kind = mask_kind(im.mode, label_map)
        if kind is None:
            raise Refused(f"mode {im.mode}; masks must be single-channel (class indices or raw values) or "
                          "RGB colours")
        return kind, mask_raw(upright(im), kind)
