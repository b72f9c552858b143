"""Score a predictor on a split: standard mIoU and per-class IoU (void ignored)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from automl.bundle.predictor import Predictor
from automl.data.folder import Split
from automl.trial.metrics import ConfusionMatrix, mean_iou, per_class_iou


@dataclass(frozen=True)
class Scores:
    miou: float
    per_class: tuple[float | None, ...]  # None: class absent from truth and prediction
    images: int

    def as_dict(self, classes: tuple[str, ...]) -> dict:
        per_class = {c: None if v is None else round(v, 6) for c, v in zip(classes, self.per_class, strict=True)}
        return {"miou": round(self.miou, 6), "images": self.images, "per_class_iou": per_class}


def evaluate(predictor: Predictor, split: Split, num_classes: int, ignore_index: int,
             indices: list[int] | None = None) -> Scores:
    cm = ConfusionMatrix(num_classes, ignore_index)
    idx = list(range(len(split))) if indices is None else indices
    for i in idx:
        pred = predictor.predict(split.images[i])
        cm.update(torch.from_numpy(pred), torch.from_numpy(split.masks[i]))
    mat = cm.numpy()
    iou = per_class_iou(mat)
    return Scores(mean_iou(mat), tuple(None if np.isnan(v) else float(v) for v in iou), len(idx))
