"""Test-time augmentation on softmax probabilities: flips and scales, any input size.

Each view resizes and/or flips the uint8 image, runs the model on it (preprocessed and padded
exactly like a plain prediction), maps the probabilities back to the original pixel grid and
averages them. Scales are applied before padding, so every view respects the /32 rule.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

# uint8 H×W×3 image → logits (1, C, h, w) for that image's own size (already cropped back).
ViewLogits = Callable[[np.ndarray], np.ndarray]


class TTASpec(BaseModel):
    """Which views to average. The identity view (scale 1, no flip) is always part of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hflip: bool = False
    vflip: bool = False
    scales: tuple[float, ...] = Field(default=(1.0,), min_length=1)

    @field_validator("scales")
    @classmethod
    def _positive(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(s <= 0 for s in v):
            raise ValueError(f"TTA scales must be > 0, got {list(v)}")
        return tuple(dict.fromkeys(float(s) for s in v))  # unique, order kept

    def views(self) -> list[tuple[float, bool, bool]]:
        """(scale, hflip, vflip) per view; flips are not combined with each other."""
        scales = self.scales if 1.0 in self.scales else (1.0, *self.scales)
        out: list[tuple[float, bool, bool]] = []
        for s in scales:
            out.append((s, False, False))
            if self.hflip:
                out.append((s, True, False))
            if self.vflip:
                out.append((s, False, True))
        return out

    @property
    def enabled(self) -> bool:
        return len(self.views()) > 1

    def describe(self) -> str:
        if not self.enabled:
            return "none"
        parts = [n for n, on in (("hflip", self.hflip), ("vflip", self.vflip)) if on]
        if self.scales != (1.0,):
            parts.append("scales " + "/".join(f"{s:g}" for s in self.scales))
        return f"{' + '.join(parts)} ({len(self.views())} views)"


NO_TTA = TTASpec()


def softmax(logits: np.ndarray) -> np.ndarray:
    """(C, H, W) logits → float32 probabilities over axis 0."""
    z = logits.astype(np.float32, copy=False)
    e = np.exp(z - z.max(0, keepdims=True))
    e /= e.sum(0, keepdims=True)
    return e


def resize_probabilities(probs: np.ndarray, height: int, width: int) -> np.ndarray:
    """(C, h, w) → (C, height, width), bilinear with half-pixel centres (as F.interpolate's
    align_corners=False); cv2 takes the classes as channels in one call."""
    hwc = cv2.resize(np.ascontiguousarray(probs.transpose(1, 2, 0)), (width, height), interpolation=cv2.INTER_LINEAR)
    return hwc.reshape(height, width, -1).transpose(2, 0, 1)


def tta_probabilities(image: np.ndarray, spec: TTASpec, view_logits: ViewLogits) -> np.ndarray:
    """Mean softmax probabilities (C, H, W) over the views of ``spec``.

    In numpy, not torch: on a CPU with few cores torch's channel softmax, flips and interpolation
    on these small maps cost several times what numpy + cv2 do (benchmarks/README.md)."""
    height, width = image.shape[:2]
    total: np.ndarray | None = None
    views = spec.views()
    for scale, hflip, vflip in views:
        img = image
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            img = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        if hflip:
            img = img[:, ::-1]
        if vflip:
            img = img[::-1]
        probs = softmax(view_logits(np.ascontiguousarray(img))[0])
        if hflip:
            probs = probs[:, :, ::-1]
        if vflip:
            probs = probs[:, ::-1]
        if probs.shape[-2:] != (height, width):
            probs = resize_probabilities(probs, height, width)
        total = probs.copy() if total is None else total + probs
    assert total is not None
    total /= len(views)
    return total
