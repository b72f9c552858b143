"""The files of a bundle and its manifest (``bundle.json``), which ``load_bundle`` reads.

::

    bundle/
      model/               SMP save_pretrained (config.json + model.safetensors) + trial_config.json
      preprocess.yaml      albumentations eval transform (normalise + pad bottom/right)
      train_transform.yaml albumentations training augmentation
      recipe.yaml          the resolved training config (TrialConfig) of the final retrain
      model.onnx           fp32 ONNX, input "input" (N,3,H,W) normalised+padded, output "logits"
      model.int8.onnx      INT8 QDQ ONNX, same interface (shipped even when rejected; see bundle.json)
      bundle.json          this manifest: classes, TTA decision, INT8 decision, default predictor,
                           the label map (data.label_map: class index → the masks' raw value or colour)
      report.md, report.json, report.png (retrain curve; val mIoU against latency per variant)
      student/             (final.distill) the distilled student: a whole bundle of this layout
      distill.png          (final.distill) mIoU against latency: teacher, student alone, distilled
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from automl.bundle.tta import NO_TTA, TTASpec
from automl.bundle.variants import Backend, Model, Precision
from automl.config import LabelMap

MODEL_DIR = "model"
PREPROCESS = "preprocess.yaml"
TRAIN_TRANSFORM = "train_transform.yaml"
RECIPE = "recipe.yaml"
ONNX_FP32 = "model.onnx"
ONNX_INT8 = "model.int8.onnx"
MANIFEST = "bundle.json"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
REPORT_PNG = "report.png"
STUDENT_DIR = "student"
DISTILL_PNG = "distill.png"

ONNX_INPUT = "input"
ONNX_OUTPUT = "logits"
ONNX_FILES: dict[Precision, str] = {"fp32": ONNX_FP32, "int8": ONNX_INT8}


class OnnxInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exporter: Literal["dynamo", "legacy"]
    dynamic: bool                  # H, W (multiples of pad_divisor) and batch are free
    input_size: tuple[int, int]    # the size it was exported and checked at
    opset: int | None = None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = 1
    study: str
    classes: tuple[str, ...]
    ignore_index: int
    pad_divisor: int
    input_size: tuple[int, int]
    onnx: OnnxInfo | None = None           # None: the export failed (torch only)
    int8_file: bool = False
    int8_accepted: bool = False
    int8_method: str | None = None
    tta: TTASpec = NO_TTA                  # the views that were evaluated
    tta_kept: bool = False
    default_backend: Backend = "torch"
    default_precision: Precision = "fp32"
    # data.label_map of the study: how the masks' raw values or colours became the classes;
    # None: the masks held class indices. Predictor.to_original turns predictions back.
    label_map: LabelMap | None = None
    # final.distill: the student's bundle folder (same layout) and which model load_bundle serves
    student: str | None = None
    default_model: Model = "teacher"
