"""Planted mask errors, to check that ``automl inspect`` finds them (tests and benchmarks).

Each function returns a new mask; the input is left untouched. "Largest" means most pixels.
"""

from __future__ import annotations

import numpy as np


def _largest(mask: np.ndarray, ignore_index: int, k: int) -> list[int]:
    counts = np.bincount(mask.ravel(), minlength=256)
    counts[ignore_index] = 0
    return [int(c) for c in np.argsort(-counts, kind="stable")[:k] if counts[c] > 0]


def swap_classes(mask: np.ndarray, ignore_index: int) -> np.ndarray:
    """Exchange the labels of the image's two largest classes (a class mix-up)."""
    top = _largest(mask, ignore_index, 2)
    if len(top) < 2:
        raise ValueError("swap_classes needs a mask with at least two classes")
    a, b = top
    out = mask.copy()
    out[mask == a], out[mask == b] = b, a
    return out


def shift_mask(mask: np.ndarray, ignore_index: int, fraction: float = 0.25) -> np.ndarray:
    """Move the annotation right and down by ``fraction`` of the size; the vacated band is void."""
    h, w = mask.shape
    dy, dx = max(1, round(h * fraction / 2)), max(1, round(w * fraction))
    out = np.full_like(mask, ignore_index)
    out[dy:, dx:] = mask[: h - dy, : w - dx]
    return out


def erase_objects(mask: np.ndarray, ignore_index: int, keep: int = 1) -> np.ndarray:
    """Forgotten objects: every class but the ``keep`` largest is painted with the largest class."""
    kept = _largest(mask, ignore_index, keep)
    out = mask.copy()
    out[~np.isin(mask, [*kept, ignore_index])] = kept[0]
    return out


def empty_mask(mask: np.ndarray, ignore_index: int) -> np.ndarray:
    """An annotation that holds nothing: every pixel void."""
    return np.full_like(mask, ignore_index)


CORRUPTIONS = {"swap": swap_classes, "shift": shift_mask, "erase": erase_objects, "empty": empty_mask}
