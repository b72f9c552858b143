"""Standard mIoU: per-class IoU from a confusion matrix over the whole split, void ignored.

Not SMP's ``iou_score(reduction="micro")``, which pools pixels over classes.
"""

from __future__ import annotations

import numpy as np
import torch


class ConfusionMatrix:
    def __init__(self, num_classes: int, ignore_index: int, device: torch.device | str = "cpu"):
        self.n, self.ignore_index = num_classes, ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: integer tensors of the same shape; rows = truth, columns = prediction."""
        valid = target != self.ignore_index
        idx = target[valid].to(torch.int64) * self.n + pred[valid].to(torch.int64)
        self.mat += torch.bincount(idx, minlength=self.n * self.n).view(self.n, self.n).to(self.mat.device)

    def numpy(self) -> np.ndarray:
        return self.mat.cpu().numpy()


def per_class_iou(mat: np.ndarray) -> np.ndarray:
    """IoU per class; NaN for a class absent from both truth and prediction."""
    mat = mat.astype(np.float64)
    tp = np.diag(mat)
    union = mat.sum(0) + mat.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(mat: np.ndarray) -> float:
    iou = per_class_iou(mat)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0
