"""A small EM-like dataset, generated deterministically: few large images, 2 classes.

Electron-microscopy membrane segmentation is the kind of data the budget benchmark's second
domain stands for: a handful of big grey images where a thin, connected structure (cell
membranes) is the class that matters. Each image here is a tiling of cells (a Voronoi diagram
on smoothly warped coordinates, so boundaries curve) whose 2-3 px boundaries are the
`membrane` class; the image makes them hard to read on purpose:

- each cell has its own grey level, plus slow illumination drift;
- membrane contrast fades along its length (parts are barely darker than the cell);
- dark organelle-like blobs inside cells are *not* membrane;
- blur and pixel noise on top.

``generate(root)`` writes ``root/{train,test}/{images,masks}/`` (no val/: the benchmark's
study carves its selection split from train/, as studies/camvid.yaml does, and test/ is the
untouched holdout) and a marker with its parameters; a second call with the same parameters
returns at once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

CLASSES = ["cell", "membrane"]
DEFAULTS = {"n_train": 30, "n_test": 12, "size": 512, "seed": 0}
MARKER = ".em_like.json"


def _smooth(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [-1, 1]-ish: a coarse random grid upsampled with cubic interpolation."""
    coarse = rng.normal(size=(cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def _labels(rng: np.random.Generator, size: int) -> np.ndarray:
    """Cell index per pixel: nearest seed point on warped coordinates (curved cell walls)."""
    n = max(4, round(rng.integers(35, 90) * (size / 512) ** 2))  # cells of the same size at any image size
    seeds = rng.uniform(0, size, (n, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    amp = size / 24
    yy += amp * _smooth(rng, size, 6)
    xx += amp * _smooth(rng, size, 6)
    best = np.full((size, size), np.inf, np.float32)
    label = np.zeros((size, size), np.int32)
    for i, (sy, sx) in enumerate(seeds):  # one seed at a time: memory stays one image
        d = (yy - sy) ** 2 + (xx - sx) ** 2
        closer = d < best
        best[closer], label[closer] = d[closer], i
    return label


def _membrane(rng: np.random.Generator, label: np.ndarray) -> np.ndarray:
    edge = np.zeros(label.shape, bool)
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[1:, :] |= label[1:, :] != label[:-1, :]
    width = int(rng.integers(2, 4))
    return cv2.dilate(edge.astype(np.uint8), np.ones((width, width), np.uint8)) > 0


def sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (grey image H×W uint8, mask H×W uint8 in {0, 1})."""
    label = _labels(rng, size)
    membrane = _membrane(rng, label)
    img = rng.uniform(135, 200, label.max() + 1).astype(np.float32)[label]
    img += 18 * _smooth(rng, size, 4)
    # membranes: darker than their cells by a contrast that fades along them
    fade = np.clip(0.65 + 0.45 * _smooth(rng, size, 10), 0.15, 1.0)
    img = np.where(membrane, img - 85 * fade, img)
    # organelles: dark filled ellipses, the main source of false membrane
    for _ in range(int(rng.integers(10, 30))):
        cy, cx = (int(v) for v in rng.uniform(0, size, 2))
        axes = (int(rng.integers(4, 18)), int(rng.integers(3, 10)))
        level = float(rng.uniform(60, 120))
        cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, level, -1)
    img = cv2.GaussianBlur(img, (0, 0), 1.2)
    img += rng.normal(0, 14, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), membrane.astype(np.uint8)


def generate(root: Path, *, n_train: int = DEFAULTS["n_train"], n_test: int = DEFAULTS["n_test"],
             size: int = DEFAULTS["size"], seed: int = DEFAULTS["seed"]) -> Path:
    """Write the dataset under ``root`` (replacing another one there); returns ``root``."""
    spec = {"n_train": n_train, "n_test": n_test, "size": size, "seed": seed, "classes": CLASSES}
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return root
    shutil.rmtree(root, ignore_errors=True)
    for k, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(n):
            # one generator per image: an image does not depend on how many come before it
            img, mask = sample(np.random.default_rng([seed, k, i]), size)
            cv2.imwrite(str(root / split / "images" / f"{split}_{i:03d}.png"), img)
            cv2.imwrite(str(root / split / "masks" / f"{split}_{i:03d}.png"), mask)
    marker.write_text(json.dumps(spec))
    return root


def data_section(root: Path) -> dict:
    """The study file's `data:` section for it (no void label)."""
    return {"root": str(root.resolve()), "classes": CLASSES}
