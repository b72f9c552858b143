"""Write a bundle folder atomically (build in a temporary sibling, then rename)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Callable

import yaml
from torch import nn

from automl.atomic import atomic_dir
from automl.bundle.layout import (
    MANIFEST,
    MODEL_DIR,
    ONNX_FP32,
    ONNX_INT8,
    PREPROCESS,
    RECIPE,
    REPORT_JSON,
    REPORT_MD,
    REPORT_PNG,
    TRAIN_TRANSFORM,
    Manifest,
)
from automl.trial.checkpoint import save_model
from automl.trial_config import TrialConfig

log = logging.getLogger(__name__)

RECIPE_HEADER = ("# The resolved training config of the final retrain (automl TrialConfig, version 1):\n"
                 "# model, optimizer, LR schedule, loss weights, augmentation, epochs, batch size, seed.\n"
                 "# Retrain elsewhere: automl.trial.engine.fit(TrialConfig.from_dict(yaml.safe_load(...)), ...)\n")


def save_transforms(cfg: TrialConfig, out_dir: Path) -> list[str]:
    """preprocess.yaml (must work) and train_transform.yaml (best effort); returns notes."""
    import albumentations as A

    from automl.trial.augment import eval_transform, train_transform

    A.save(eval_transform(cfg.data), str(out_dir / PREPROCESS), data_format="yaml")
    try:
        A.save(train_transform(cfg.augment, cfg.data.ignore_index), str(out_dir / TRAIN_TRANSFORM),
               data_format="yaml")
    except Exception as exc:  # noqa: BLE001 - a custom transform albumentations cannot serialise
        log.warning("train_transform.yaml not written: %s", exc)
        return [f"train_transform.yaml not written ({type(exc).__name__}: {exc})"]
    return []


def write_bundle(out_dir: Path, *, model: nn.Module, cfg: TrialConfig, manifest: Manifest,
                 report: dict, render_md: Callable[[dict], str], onnx_fp32: Path | None = None,
                 onnx_int8: Path | None = None, model_extra: dict | None = None,
                 render_png: Callable[[dict, Path], Path] | None = None) -> dict:
    """Write every bundle file; an existing bundle at ``out_dir`` is replaced only at the end.
    Returns the report as written (with the figure's name and any notes added here)."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        save_model(model, cfg, tmp / MODEL_DIR, extra=model_extra)
        notes = save_transforms(cfg, tmp)
        (tmp / RECIPE).write_text(RECIPE_HEADER + yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        for src, name in ((onnx_fp32, ONNX_FP32), (onnx_int8, ONNX_INT8)):
            if src is not None:
                shutil.copyfile(src, tmp / name)
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2))
        if render_png is not None:
            try:
                render_png(report, tmp / REPORT_PNG)
                report = {**report, "figure": REPORT_PNG}
            except Exception as exc:  # noqa: BLE001 - a figure is no reason to lose the bundle
                log.warning("%s not written: %s: %s", REPORT_PNG, type(exc).__name__, exc)
        if notes:
            report = {**report, "notes": [*report.get("notes", []), *notes]}
        (tmp / REPORT_JSON).write_text(json.dumps(report, indent=2, allow_nan=False))
        (tmp / REPORT_MD).write_text(render_md(report))
    return report
