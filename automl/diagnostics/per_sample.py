"""Per-image evaluation and the outlier rule behind ``automl inspect``.

Every image is evaluated on its own (batch size 1, no crop, padded to the model's divisor):
per-image mIoU (mean IoU over the classes present in its truth or its prediction), pixel
cross-entropy over its labelled pixels, pixel accuracy and per-class IoU.

Outlier rule (Iglewicz & Hoaglin's modified z-score, robust to the outliers it hunts):
    z_miou = 0.6745 · (median(mIoU) − mIoU) / MAD(mIoU)              (low mIoU is suspicious)
    z_loss = 0.6745 · (ln loss − median(ln loss)) / MAD(ln loss)     (high loss is suspicious)
    score  = max(z_miou, z_loss); flagged when score > threshold (3.5 by default).
The loss enters as its logarithm: per-image losses of a good model are strongly right-skewed
(most near zero), and on the raw scale ordinary hard images would be flagged.
Images are ranked by score, highest first. An image with no labelled pixel cannot be scored and
ranks first (score = inf). When MAD is 0 the mean absolute deviation (× 1.2533) stands in.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from automl.data.folder import Split
from automl.data.loader import Normalizer, eval_batches
from automl.trial.engine import Runtime, forward_padded
from automl.trial.metrics import ConfusionMatrix, per_class_iou
from automl.trial_config import TrialConfig

DEFAULT_THRESHOLD = 3.5
RULE = ("modified z-score (Iglewicz & Hoaglin): score = max(0.6745·(median − mIoU)/MAD of per-image mIoU, "
        "0.6745·(ln loss − median)/MAD of per-image ln loss); flagged when score > {t:g}")


@dataclass
class SampleScore:
    index: int
    stem: str
    miou: float            # NaN when the image has no labelled pixel
    loss: float            # pixel cross-entropy over labelled pixels; NaN when none
    pixel_acc: float
    labelled: float        # share of labelled (non-void) pixels
    iou: dict[str, float] = field(default_factory=dict)   # classes in truth or prediction
    score: float = 0.0
    flagged: bool = False
    reason: str = ""
    rank: int = 0


class SampleScorer:
    """Runs a model on one uint8 H×W×3 image at a time; returns its logits (1×K×H×W, float)."""

    def __init__(self, model: nn.Module, cfg: TrialConfig, runtime: Runtime):
        self.model = model.to(runtime.device).eval()
        if runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.cfg, self.runtime = cfg, runtime
        self.normalize = Normalizer(cfg.data.mean, cfg.data.std, runtime.device, runtime.channels_last)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        with self.runtime.autocast():
            out = forward_padded(self.model, self.normalize(images), self.cfg.data.pad_divisor)
        return out.float()

    def predict(self, image: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
        return self.logits(x).argmax(1)[0].to(torch.uint8).cpu().numpy()


def score_image(logits: torch.Tensor, target: torch.Tensor, cfg: TrialConfig) -> dict:
    """Scores of one image: logits 1×K×H×W, target 1×H×W (int64, on the same device)."""
    ignore, classes = cfg.data.ignore_index, cfg.data.classes
    valid = target != ignore
    n_valid = int(valid.sum())
    labelled = n_valid / target.numel()
    if n_valid == 0:
        return dict(miou=math.nan, loss=math.nan, pixel_acc=math.nan, labelled=0.0, iou={})
    pred = logits.argmax(1)
    cm = ConfusionMatrix(len(classes), ignore, target.device)
    cm.update(pred, target)
    iou = per_class_iou(cm.numpy())
    loss = float(F.cross_entropy(logits, target, ignore_index=ignore))
    acc = float((pred[valid] == target[valid]).float().mean())
    present = {classes[c]: float(v) for c, v in enumerate(iou) if not np.isnan(v)}
    return dict(miou=float(np.nanmean(iou)), loss=loss, pixel_acc=acc, labelled=labelled, iou=present)


def score_split(predictor: SampleScorer, split: Split) -> list[SampleScore]:
    """Evaluate each image of ``split`` alone (batch size 1); scores in index order."""
    scores: list[SampleScore] = []
    device = predictor.runtime.device
    for idx, imgs, masks in eval_batches(split, list(range(len(split))), 1):
        i = idx[0]
        s = score_image(predictor.logits(imgs), masks.to(device), predictor.cfg)
        scores.append(SampleScore(i, split.stems[i], **s))
    return sorted(scores, key=lambda s: s.index)


def _robust_z(values: np.ndarray) -> np.ndarray:
    """Modified z-score 0.6745·(x − median)/MAD, with the mean absolute deviation when MAD is 0."""
    med = np.median(values)
    mad = np.median(np.abs(values - med))
    if mad > 0:
        return 0.6745 * (values - med) / mad
    meanad = np.mean(np.abs(values - med))
    return (values - med) / (1.2533 * meanad) if meanad > 0 else np.zeros_like(values)


def rank(scores: list[SampleScore], threshold: float = DEFAULT_THRESHOLD) -> list[SampleScore]:
    """Set score/flagged/reason/rank on each sample; return them worst first (see module doc)."""
    scored = [s for s in scores if not math.isnan(s.miou)]
    if scored:
        miou = np.array([s.miou for s in scored])
        loss = np.array([s.loss for s in scored])
        z_miou, z_loss = -_robust_z(miou), _robust_z(np.log(np.maximum(loss, 1e-6)))
        med_m, med_l = float(np.median(miou)), float(np.median(loss))
        for s, zm, zl in zip(scored, z_miou, z_loss):
            s.score = float(max(zm, zl))
            s.flagged = s.score > threshold
            why = (f"mIoU {s.miou:.3f} vs median {med_m:.3f} (z {zm:.1f})" if zm >= zl
                   else f"loss {s.loss:.3f} vs median {med_l:.3f} (z {zl:.1f})")
            s.reason = why if s.flagged else ""
    for s in scores:
        if math.isnan(s.miou):
            s.score, s.flagged, s.reason = math.inf, True, "no labelled pixel (mask is all void)"
    ordered = sorted(scores, key=lambda s: (-s.score, s.miou if not math.isnan(s.miou) else -1.0, s.index))
    for r, s in enumerate(ordered, 1):
        s.rank = r
    return ordered


def write_ranking(ranked: list[SampleScore], classes: tuple[str, ...], path: Path, split: str) -> Path:
    """CSV, worst first: rank, image, flagged, score, miou, loss, pixel_acc, labelled, reason, iou_<class>..."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "image", "flagged", "score", "miou", "loss", "pixel_acc", "labelled", "reason",
                    *(f"iou_{c}" for c in classes)])
        for s in ranked:
            w.writerow([s.rank, f"{split}/{s.stem}", int(s.flagged), _num(s.score), _num(s.miou), _num(s.loss),
                        _num(s.pixel_acc), _num(s.labelled), s.reason,
                        *(_num(s.iou[c]) if c in s.iou else "" for c in classes)])
    return path


def _num(x: float) -> str:
    return "" if math.isnan(x) else ("inf" if math.isinf(x) else f"{x:.4f}")
