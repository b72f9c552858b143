"""Target-centred crop: crop around a pixel of a chosen class, so rare and off-centre objects
are seen as often, and in as many places, as the common ones.

Per call: pick a class among those present in the mask (uniformly, or weighted towards the
classes that cover few pixels in this image), pick one pixel of it uniformly, and cut a
``height`` x ``width`` window whose centre is that pixel moved by a random offset of up to
``jitter`` x half the window. The window is not clamped to the image: where it runs past a
border the image is padded with ``fill`` and the mask with ``ignore_index``, so an object at
the bottom edge lands anywhere in the crop instead of always at its bottom. A mask with no
class pixels (or no mask) gets a uniform random window.

A plain ``DualTransform`` subclass with an ``InitSchema``: ``A.save``/``A.load`` round-trip it
by its full class path (import this module before ``A.load``).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from albumentations.core.transforms_interface import (
    BaseTransformInitSchema,
    DualTransform,
)
from albumentations.core.type_definitions import Targets
from pydantic import Field


class TargetCrop(DualTransform):
    """Crop ``height`` x ``width`` around a pixel of a randomly chosen class.

    Args:
        height, width: crop size in pixels.
        ignore_index: the void label; never chosen as a target, and the mask's padding value.
        rarity: class choice weight is ``pixels_in_image ** -rarity`` (times ``class_weights``):
            0 picks uniformly among the classes present, 0.5 favours the classes that cover few
            pixels of this image, 1 (default) picks each present class in proportion to 1/area
            (on CamVid-small it puts the rarest class into the most crops with the least padding;
            see benchmarks/target_crop.py).
        class_weights: optional per-class multipliers (index = class id), e.g. inverse dataset
            frequencies from ``automl audit``; a class with weight 0 is never a target.
        jitter: how far the window centre may move from the chosen pixel, as a fraction of
            half the window (0: the pixel is the exact centre; 1: anywhere in the window).
        keep_inside: shift the window back inside the image where the image is large enough
            (no padding, the chosen pixel stays in the window, but objects at a border stay at
            the crop's border). Off by default: padding is what moves objects off their usual
            place in the frame.
        fill: image padding value.
        p: probability of applying the transform.
    """

    _targets = (Targets.IMAGE, Targets.MASK)

    class InitSchema(BaseTransformInitSchema):
        height: Annotated[int, Field(ge=1)]
        width: Annotated[int, Field(ge=1)]
        ignore_index: Annotated[int, Field(ge=0, le=255)]
        rarity: Annotated[float, Field(ge=0, le=4)]
        class_weights: list[Annotated[float, Field(ge=0)]] | None
        jitter: Annotated[float, Field(ge=0, le=1)]
        keep_inside: bool
        fill: float

    def __init__(self, height: int, width: int, ignore_index: int = 255, rarity: float = 1.0,
                 class_weights: list[float] | None = None, jitter: float = 0.5, keep_inside: bool = False,
                 fill: float = 0, p: float = 1.0):
        super().__init__(p=p)
        self.height, self.width = height, width
        self.ignore_index, self.rarity, self.class_weights = ignore_index, rarity, class_weights
        self.jitter, self.keep_inside, self.fill = jitter, keep_inside, fill

    # -- choosing the window ------------------------------------------------------------------

    def choose_class(self, mask: np.ndarray) -> int | None:
        """A class id present in ``mask`` (drawn by the rule above), or None if it has none."""
        counts = np.bincount(mask.ravel(), minlength=256)
        counts[self.ignore_index] = 0
        present = np.flatnonzero(counts)
        if present.size == 0:
            return None
        weights = counts[present].astype(np.float64) ** -self.rarity
        if self.class_weights:
            cw = np.asarray(self.class_weights, dtype=np.float64)
            weights *= np.where(present < cw.size, cw[np.minimum(present, cw.size - 1)], 1.0)
        total = weights.sum()
        if total <= 0:
            return None
        return int(self.random_generator.choice(present, p=weights / total))

    def window(self, mask: np.ndarray | None, shape: tuple[int, int]) -> tuple[int, int]:
        """Top-left corner (y0, x0) of the crop window; may lie outside the image."""
        h_img, w_img = shape
        cls = self.choose_class(mask) if mask is not None else None
        if cls is None:
            return (self._uniform_start(h_img, self.height), self._uniform_start(w_img, self.width))
        ys, xs = np.nonzero(mask == cls)
        k = int(self.random_generator.integers(len(ys)))
        dy = self.random_generator.uniform(-1, 1) * self.jitter * self.height / 2
        dx = self.random_generator.uniform(-1, 1) * self.jitter * self.width / 2
        y0, x0 = int(round(ys[k] + dy - self.height / 2)), int(round(xs[k] + dx - self.width / 2))
        if self.keep_inside:
            y0 = _clamp(y0, h_img, self.height)
            x0 = _clamp(x0, w_img, self.width)
        return y0, x0

    def _uniform_start(self, size: int, crop: int) -> int:
        lo, hi = min(0, size - crop), max(0, size - crop)
        return int(self.random_generator.integers(lo, hi + 1))

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        mask = data.get("mask")
        if mask is not None and mask.ndim == 3:
            mask = mask[..., 0]
        return {"crop_origin": self.window(mask, params["shape"][:2])}

    # -- applying it --------------------------------------------------------------------------

    def apply(self, img: np.ndarray, crop_origin: tuple[int, int], **params: Any) -> np.ndarray:
        return crop_padded(img, crop_origin, (self.height, self.width), self.fill)

    def apply_to_mask(self, mask: np.ndarray, crop_origin: tuple[int, int], **params: Any) -> np.ndarray:
        return crop_padded(mask, crop_origin, (self.height, self.width), self.ignore_index)


def _clamp(start: int, size: int, crop: int) -> int:
    """Move a window start so the window lies inside [0, size) when it fits."""
    return min(max(start, 0), size - crop) if size >= crop else start


def crop_padded(arr: np.ndarray, origin: tuple[int, int], size: tuple[int, int], fill: float) -> np.ndarray:
    """The ``size`` window at ``origin`` (y0, x0) of ``arr``; parts outside ``arr`` are ``fill``."""
    (y0, x0), (h, w) = origin, size
    out = np.empty((h, w, *arr.shape[2:]), dtype=arr.dtype)
    out[...] = fill
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(arr.shape[0], y0 + h), min(arr.shape[1], x0 + w)
    if ye > ys and xe > xs:
        out[ys - y0:ye - y0, xs - x0:xe - x0] = arr[ys:ye, xs:xe]
    return out
