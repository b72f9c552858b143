"""Dataset statistics for ``automl audit``: class frequencies, sizes, label sanity, positions.

Computed from the decoded masks of a ``Dataset`` (labels were already validated by
``load_dataset``). Shares of pixels are shares of *labelled* pixels (void excluded); the void
share is reported on its own. Position statistics are per image: for each image that contains
a class, whether one half of the frame holds at least ``HALF_SHARE`` of that class's pixels.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from automl.data.folder import Dataset, Split
from automl.diagnostics.heatmap import position_density

# An image counts a class as sitting in one half when that half holds at least this share of the
# class's pixels (the two halves' pixels; a middle row or column counts for neither). A bare
# majority made a class spread evenly over the frame (47-59 % per image in one half) a finding.
HALF_SHARE = 2 / 3

@dataclass
class SplitStats:
    name: str
    n_images: int
    pixel_counts: np.ndarray        # (K,) pixels of each class
    image_counts: np.ndarray        # (K,) images containing each class
    void_pixels: int
    total_pixels: int
    sizes: Counter                  # (h, w) → number of images
    all_void: list[str] = field(default_factory=list)                   # stems
    single_class: list[tuple[str, int]] = field(default_factory=list)   # (stem, class)
    # Per class: number of images (among those containing it) with at least HALF_SHARE of the
    # class's pixels in the top / bottom / left / right half of the frame.
    mostly: dict[str, np.ndarray] = field(default_factory=dict)
    central_pixels: np.ndarray | None = None   # (K,) class pixels in the central 50% x 50% box
    present_area: np.ndarray | None = None     # (K,) labelled pixels of the images containing each class
    density: np.ndarray | None = None          # (K, G, G), see heatmap.position_density

    @property
    def labelled_pixels(self) -> int:
        return self.total_pixels - self.void_pixels

    @property
    def pixel_share(self) -> np.ndarray:
        """(K,) share of labelled pixels."""
        return self.pixel_counts / max(1, self.labelled_pixels)

    @property
    def image_share(self) -> np.ndarray:
        """(K,) share of images that contain the class."""
        return self.image_counts / max(1, self.n_images)

    @property
    def void_share(self) -> float:
        return self.void_pixels / max(1, self.total_pixels)

    def mostly_share(self, side: str) -> np.ndarray:
        """(K,) share of the images containing a class where most of it sits on ``side``."""
        return self.mostly[side] / np.maximum(1, self.image_counts)

    @property
    def central_share(self) -> np.ndarray:
        """(K,) share of a class's pixels inside the central quarter of the frame (0.25 if spread evenly)."""
        return self.central_pixels / np.maximum(1, self.pixel_counts)


@dataclass
class Audit:
    classes: tuple[str, ...]
    ignore_index: int
    splits: dict[str, SplitStats]
    grid: int

    @property
    def train(self) -> SplitStats:
        return self.splits["train"]

    def class_weights(self, split: str = "train") -> np.ndarray:
        """Median-frequency balancing weights (Eigen & Fergus): median(freq) / freq_c, where
        freq_c is the class's share of the labelled pixels of the images that contain it.
        0 for absent classes."""
        s = self.splits[split]
        present = s.image_counts > 0
        freq = np.zeros(len(self.classes))
        freq[present] = s.pixel_counts[present] / np.maximum(1, s.present_area[present])
        weights = np.zeros(len(self.classes))
        if present.any():
            weights[present] = np.median(freq[present]) / freq[present]
        return weights


def _halves(mask: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Per class, pixels in each half of the frame (a middle row/column counts for neither)."""
    h, w = mask.shape
    cut = {"top": mask[: h // 2], "bottom": mask[(h + 1) // 2:],
           "left": mask[:, : w // 2], "right": mask[:, (w + 1) // 2:]}
    return {side: np.bincount(part.ravel(), minlength=256)[:num_classes] for side, part in cut.items()}


def audit_split(split: Split, num_classes: int, ignore_index: int, grid: int = 32) -> SplitStats:
    k = num_classes
    stats = SplitStats(split.name, len(split), np.zeros(k, np.int64), np.zeros(k, np.int64), 0, 0, Counter(),
                       mostly={side: np.zeros(k, np.int64) for side in ("top", "bottom", "left", "right")},
                       central_pixels=np.zeros(k, np.int64), present_area=np.zeros(k, np.int64))
    for stem, mask in zip(split.stems, split.masks):
        h, w = mask.shape
        counts = np.bincount(mask.ravel(), minlength=256)
        cls_counts = counts[:k]
        stats.pixel_counts += cls_counts
        present = cls_counts > 0
        stats.image_counts += present
        stats.void_pixels += int(counts[ignore_index])
        stats.present_area += present * int(mask.size - counts[ignore_index])
        stats.total_pixels += mask.size
        stats.sizes[(h, w)] += 1
        if not present.any():
            stats.all_void.append(stem)
        elif present.sum() == 1 and counts[ignore_index] == 0:
            stats.single_class.append((stem, int(np.flatnonzero(present)[0])))
        halves = _halves(mask, k)
        for a, b in (("top", "bottom"), ("bottom", "top"), ("left", "right"), ("right", "left")):
            stats.mostly[a] += present & (halves[a] >= HALF_SHARE * (halves[a] + halves[b])) & (halves[a] > 0)
        centre = mask[h // 4: h - h // 4, w // 4: w - w // 4]
        stats.central_pixels += np.bincount(centre.ravel(), minlength=256)[:k]
    stats.density = position_density(split.masks, k, ignore_index, grid)
    return stats


def audit_dataset(ds: Dataset, grid: int = 32) -> Audit:
    splits = {name: audit_split(split, len(ds.classes), ds.ignore_index, grid) for name, split in ds.splits.items()}
    return Audit(ds.classes, ds.ignore_index, splits, grid)
