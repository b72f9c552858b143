"""Where each class sits: class-pixel density over normalised image coordinates, and its PNG.

``position_density`` takes any list of masks of any sizes (whole images or training crops), so
the same picture shows a dataset's layout and what an augmentation does to it. Every mask is
mapped onto the unit square and cut into a ``grid`` x ``grid`` raster; cell (i, j) holds the
share of the mask's pixels in that cell that carry the class, averaged over the masks. Rendering
uses PIL only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

# viridis, sampled at 9 points; interpolated to 256 entries
_VIRIDIS = np.array([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                     [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]], dtype=np.float64)
_LUT = np.stack([np.interp(np.linspace(0, 8, 256), np.arange(9), _VIRIDIS[:, c]) for c in range(3)],
                axis=1).round().astype(np.uint8)


@lru_cache(maxsize=64)
def _cell_index(shape: tuple[int, int], grid: int) -> np.ndarray:
    h, w = shape
    cy = (np.arange(h) * grid) // h
    cx = (np.arange(w) * grid) // w
    return (cy[:, None] * grid + cx[None, :]).ravel()


def position_density(masks: Iterable[np.ndarray], num_classes: int, ignore_index: int,
                     grid: int = 32) -> np.ndarray:
    """K x G x G: per cell, the share of a mask's pixels there that carry each class, averaged over
    the masks (each weighs the same whatever its size). Void and unknown labels carry no class."""
    cells = grid * grid
    frac_sum = np.zeros((num_classes, cells))
    covered = np.zeros(cells)
    for mask in masks:
        labels = mask.ravel().astype(np.int64)
        labels = np.where((labels < num_classes) & (labels != ignore_index), labels, num_classes)
        counts = np.bincount(labels * cells + _cell_index(mask.shape[:2], grid),
                             minlength=(num_classes + 1) * cells).reshape(num_classes + 1, cells)
        totals = counts.sum(0)
        seen = totals > 0
        frac_sum[:, seen] += counts[:num_classes, seen] / totals[seen]
        covered += seen
    return (frac_sum / np.maximum(covered, 1)).reshape(num_classes, grid, grid)


def colorize(density: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """G x G densities → G x G x 3 uint8 (viridis), scaled to ``vmax`` (default: the map's max)."""
    top = float(density.max()) if vmax is None else vmax
    scaled = density / top if top > 0 else np.zeros_like(density)
    return _LUT[np.clip(scaled * 255, 0, 255).astype(np.uint8)]


def render(density: np.ndarray, title: str, *, size: int = 160) -> Image.Image:
    """One class's map as a captioned square tile (brightest cell = the map's maximum)."""
    tile = Image.fromarray(colorize(density)).resize((size, size), Image.NEAREST)
    out = Image.new("RGB", (size, size + 16), "white")
    out.paste(tile, (0, 16))
    ImageDraw.Draw(out).text((2, 2), f"{title}  max {density.max():.2f}", fill="black")
    return out


def render_sheet(densities: np.ndarray, names: Sequence[str], *, columns: int = 4, size: int = 160,
                 heading: str | None = None) -> Image.Image:
    """All classes' maps tiled in one image."""
    tiles = [render(d, n, size=size) for d, n in zip(densities, names)]
    rows = -(-len(tiles) // columns)
    top = 18 if heading else 0
    tw, th = size + 6, size + 16 + 6
    sheet = Image.new("RGB", (columns * tw, top + rows * th), "white")
    if heading:
        ImageDraw.Draw(sheet).text((4, 4), heading, fill="black")
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % columns) * tw + 3, top + (k // columns) * th + 3))
    return sheet
