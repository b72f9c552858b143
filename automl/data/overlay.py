"""Overlay PNGs for inspection: image | ground truth | prediction | disagreement."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

# 20 distinguishable colours (tab20 order, darker shade first), cycled beyond 20 classes.
_PALETTE = np.array([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
    [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207], [174, 199, 232], [255, 187, 120],
    [152, 223, 138], [255, 152, 150], [197, 176, 213], [196, 156, 148], [247, 182, 210], [199, 199, 199],
    [219, 219, 141], [158, 218, 229]], dtype=np.uint8)
VOID = np.array([0, 0, 0], np.uint8)
WRONG = np.array([255, 0, 0], np.uint8)
MIN_HEIGHT = 160
HEADER = 30
GAP = 4


def class_colours(num_classes: int) -> np.ndarray:
    return _PALETTE[np.arange(num_classes) % len(_PALETTE)]


def colour_mask(mask: np.ndarray, num_classes: int) -> np.ndarray:
    lut = np.tile(VOID, (256, 1))
    lut[:num_classes] = class_colours(num_classes)
    return lut[mask]


def disagreement(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, ignore_index: int) -> np.ndarray:
    """The image dimmed to grey; pixels where prediction ≠ truth in red, void in black."""
    grey = (image.mean(axis=2, keepdims=True) * 0.5).astype(np.uint8).repeat(3, axis=2)
    grey[(pred != truth) & (truth != ignore_index)] = WRONG
    grey[truth == ignore_index] = VOID
    return grey


def overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, *, num_classes: int, ignore_index: int,
            title: str) -> Image.Image:
    panels = [image, colour_mask(truth, num_classes), colour_mask(pred, num_classes),
              disagreement(image, truth, pred, ignore_index)]
    h, w = truth.shape
    scale = max(1, -(-MIN_HEIGHT // h))
    pw, ph = w * scale, h * scale
    out = Image.new("RGB", (4 * pw + 3 * GAP, ph + HEADER), "white")
    draw = ImageDraw.Draw(out)
    draw.text((4, 2), title, fill="black")
    labels = ("image", "ground truth", "prediction", "disagreement (red)")
    for k, (panel, label) in enumerate(zip(panels, labels)):
        x = k * (pw + GAP)
        out.paste(Image.fromarray(panel).resize((pw, ph), Image.NEAREST), (x, HEADER))
        draw.text((x + 4, 16), label, fill="black")
    return out


def legend(classes: Sequence[str], ignore_index: int) -> Image.Image:
    colours = class_colours(len(classes))
    rows = [*zip(classes, colours), (f"void ({ignore_index})", VOID), ("wrong (disagreement)", WRONG)]
    out = Image.new("RGB", (220, 16 * len(rows) + 4), "white")
    draw = ImageDraw.Draw(out)
    for k, (name, colour) in enumerate(rows):
        draw.rectangle((4, 4 + 16 * k, 16, 16 + 16 * k), fill=tuple(int(v) for v in colour))
        draw.text((22, 4 + 16 * k), name, fill="black")
    return out
