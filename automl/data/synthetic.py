"""A deterministic synthetic segmentation dataset, so the demo needs nothing but this package.

Shapes of several classes on textured backgrounds. Each class has a typical colour and a
shape; object positions are biased towards the image
centre like much real data, and one class is rare. Written as a normal dataset folder, so
everything downstream treats it exactly like user data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from automl.atomic import atomic_dir

CLASSES = ("background", "disc", "box", "triangle", "ring")
# Relative frequency of each object class (ring is the rare one).
_CLASS_WEIGHTS = np.array([0.32, 0.32, 0.26, 0.10])
# Each class has a typical colour, blurred by noise, so that colour is a cue and shape decides
# between classes with close colours (like real scenes: sky is usually blue, not always).
_PALETTE = np.array([[200, 70, 60], [70, 170, 80], [70, 90, 200], [200, 150, 70]], dtype=np.float32)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(60, 180) + rng.uniform(-20, 20, size=3)  # low-saturation backgrounds
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.05, 0.4)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * freq)[..., None] * rng.uniform(5, 30)
    grad = (yy / h)[..., None] * rng.uniform(-40, 40, size=3)
    noise = rng.normal(0, rng.uniform(4, 14), size=(h, w, 3))
    return base + stripes + grad + noise


def _shape_mask(cls: int, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float,
                rng: np.random.Generator) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    if cls == 1:  # disc
        return dy**2 + dx**2 <= r**2
    if cls == 2:  # box, random aspect
        a = rng.uniform(0.6, 1.0)
        return (np.abs(dy) <= r * a) & (np.abs(dx) <= r / a)
    if cls == 3:  # upward triangle
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    # ring
    d2 = dy**2 + dx**2
    return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)


def make_sample(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    img = _texture(rng, h, w)
    mask = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(rng.integers(1, 4)):
        cls = int(rng.choice(4, p=_CLASS_WEIGHTS)) + 1
        r = rng.uniform(0.12, 0.24) * min(h, w)
        # Centre-biased positions: a normal around the middle, clipped inside the frame.
        cy = float(np.clip(rng.normal(h / 2, h * 0.18), r * 0.5, h - r * 0.5))
        cx = float(np.clip(rng.normal(w / 2, w * 0.18), r * 0.5, w - r * 0.5))
        region = _shape_mask(cls, yy, xx, cy, cx, r, rng)
        colour = _PALETTE[cls - 1] + rng.normal(0, 30, size=3)
        img[region] = colour + rng.normal(0, 10, size=(int(region.sum()), 3))
        mask[region] = cls
    return np.clip(img, 0, 255).astype(np.uint8), mask


def _complete(root: Path, spec: dict) -> bool:
    marker = root / ".synthetic.json"
    try:
        return json.loads(marker.read_text()) == spec
    except (OSError, ValueError):
        return False


def generate(root: Path, *, n_train: int, n_val: int, n_test: int = 0, height: int, width: int,
             seed: int = 0) -> Path:
    """Write the dataset under ``root`` unless an identical, complete one is already there.

    Written in a temporary sibling folder and moved into place in one rename: workers that start
    together on a fresh machine each generate, the first rename wins, and no reader ever sees a
    half-written image (they did: two workers writing the same PNGs in place)."""
    spec = dict(n_train=n_train, n_val=n_val, n_test=n_test, height=height, width=width, seed=seed,
                classes=list(CLASSES), version=2)
    if _complete(root, spec):
        return root
    with atomic_dir(root, keep_if=lambda existing: _complete(existing, spec)) as tmp:
        rng = np.random.default_rng(seed)
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            if n == 0:
                continue
            (tmp / split / "images").mkdir(parents=True)
            (tmp / split / "masks").mkdir(parents=True)
            for i in range(n):
                img, mask = make_sample(rng, height, width)
                Image.fromarray(img).save(tmp / split / "images" / f"{i:05d}.png")
                Image.fromarray(mask).save(tmp / split / "masks" / f"{i:05d}.png")
        (tmp / ".synthetic.json").write_text(json.dumps(spec))
    return root
