"""A PNG of a completed trial's predictions on a fixed handful of val images, attached to the
trial as an artifact so that trials compare by eye in optuna-dashboard.

One row per image: image | ground truth | prediction, in the fixed class palette of
``automl.data.overlay`` (the one ``automl inspect`` uses), with a legend. The images are evenly
spaced over the val split: the same ones for every trial. It costs a few forward passes and a
small PNG; the time is recorded on the trial as user_attr ``artifact_s``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import optuna
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from automl.data.folder import Dataset
from automl.data.loader import Normalizer
from automl.data.overlay import VOID, class_colours, colour_mask
from automl.study.artifacts import attach_file
from automl.trial.engine import FitResult, forward_padded
from automl.trial_config import TrialConfig
from automl.view.notes import PREDICTION_GRID_ATTR

log = logging.getLogger(__name__)

N_IMAGES = 4
CELL_MIN_H, CELL_MAX_H = 96, 192  # each cell is scaled to a height in this range
GAP, HEADER, LEGEND_ROW, FONT_SIZE = 4, 40, 18, 13
COLUMNS = ("image", "ground truth", "prediction")


def grid_indices(n_val: int, n: int = N_IMAGES) -> list[int]:
    """``n`` val indices evenly spaced over the split (all of it if smaller)."""
    return sorted({int(i) for i in np.linspace(0, n_val - 1, min(n, n_val)).round()})


@torch.inference_mode()
def predict(model: nn.Module, images: Sequence[np.ndarray], cfg: TrialConfig) -> list[np.ndarray]:
    """Class-index masks (uint8 H×W) for uint8 H×W×3 images: one forward pass per image size."""
    device = next(model.parameters()).device
    normalize = Normalizer(cfg.data.mean, cfg.data.std, device)
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        by_size.setdefault(img.shape, []).append(i)
    out: list[np.ndarray] = [np.empty(0, np.uint8)] * len(images)
    was_training = model.training
    model.eval()
    try:
        for idx in by_size.values():
            x = torch.from_numpy(np.stack([images[i] for i in idx]).transpose(0, 3, 1, 2))
            pred = forward_padded(model, normalize(x), cfg.data.pad_divisor).argmax(1).to(torch.uint8).cpu()
            for k, i in enumerate(idx):
                out[i] = pred[k].numpy()
        return out
    finally:
        model.train(was_training)


def _cell(array: np.ndarray, height: int, resample: Image.Resampling) -> Image.Image:
    h, w = array.shape[:2]
    return Image.fromarray(array).resize((max(1, round(w * height / h)), height), resample)


def render_grid(images: Sequence[np.ndarray], truths: Sequence[np.ndarray], preds: Sequence[np.ndarray], *,
                classes: Sequence[str], ignore_index: int, title: str) -> Image.Image:
    n = len(classes)
    rows = []
    for img, truth, pred in zip(images, truths, preds):
        height = int(np.clip(truth.shape[0], CELL_MIN_H, CELL_MAX_H))
        rows.append([_cell(img, height, Image.Resampling.BILINEAR),
                     _cell(colour_mask(truth, n), height, Image.Resampling.NEAREST),
                     _cell(colour_mask(pred, n), height, Image.Resampling.NEAREST)])
    cell_w = max(c.width for r in rows for c in r)
    legend = [*zip(classes, class_colours(n)), (f"void ({ignore_index})", VOID)]
    legend_h = LEGEND_ROW * (-(-len(legend) // 3)) + GAP
    font = ImageFont.load_default(size=FONT_SIZE)  # a bitmap font where Pillow lacks FreeType
    width = max(3 * cell_w + 4 * GAP, 3 * 150, int(font.getlength(title)) + 2 * GAP)
    height = HEADER + sum(r[0].height + GAP for r in rows) + legend_h
    out = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(out)
    draw.text((GAP, 3), title, fill="black", font=font)
    for k, name in enumerate(COLUMNS):
        draw.text((GAP + k * (cell_w + GAP), 21), name, fill="black", font=font)
    y = HEADER
    for r in rows:
        for k, cell in enumerate(r):
            out.paste(cell, (GAP + k * (cell_w + GAP), y))
        y += r[0].height + GAP
    col_w = (width - GAP) // 3
    for i, (name, colour) in enumerate(legend):
        x0, y0 = GAP + (i % 3) * col_w, y + (i // 3) * LEGEND_ROW
        draw.rectangle((x0, y0 + 3, x0 + 11, y0 + 14), fill=tuple(int(c) for c in colour), outline="black")
        draw.text((x0 + 16, y0 + 1), name, fill="black", font=font)
    return out


class PredictionGrid:
    """Completed hook: draw the grid, attach it to the trial, record its cost. Never fails the trial."""

    def __init__(self, data: Dataset, run_dir: Path, n_images: int = N_IMAGES):
        self.run_dir = Path(run_dir)
        self.classes, self.ignore_index = data.classes, data.ignore_index
        val = data.val
        self.indices = grid_indices(len(val), n_images)
        self.images = [val.images[i] for i in self.indices]
        self.truths = [val.masks[i] for i in self.indices]

    def __call__(self, trial: optuna.Trial, cfg: TrialConfig, result: FitResult, value: float) -> None:
        t0 = time.perf_counter()
        try:
            preds = predict(result.model, self.images, cfg)
            title = (f"trial #{trial.number}  val mIoU {value:.4f}  {cfg.model.arch}/{cfg.model.encoder}  "
                     f"(val images {', '.join(map(str, self.indices))})")
            grid = render_grid(self.images, self.truths, preds, classes=self.classes,
                               ignore_index=self.ignore_index, title=title)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"trial_{trial.number:04d}_predictions.png"
                grid.save(path)
                artifact_id = attach_file(self.run_dir, trial, path)
            trial.set_user_attr(PREDICTION_GRID_ATTR, artifact_id)
        except Exception as exc:  # noqa: BLE001 - a picture must never cost a trial its result
            log.warning("trial %d: no prediction grid (%s: %s)", trial.number, type(exc).__name__, exc)
            return
        trial.set_user_attr("artifact_s", round(time.perf_counter() - t0, 4))
