"""Predictors: uint8 RGB image in, uint8 class-index mask out, with torch or ONNX Runtime;
``to_original`` turns class indices back into the masks' own raw values or colours.

The final stage scores the model through these same classes, so the reported mIoU is the
mIoU of what the bundle ships. Preprocessing is the bundle's ``preprocess.yaml`` (normalise,
pad bottom/right to the divisor); logits are cropped back to the image size.
"""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch import nn

from automl.bundle.layout import ONNX_INPUT
from automl.bundle.tta import NO_TTA, TTASpec, softmax, tta_probabilities
from automl.bundle.variants import Backend, Precision
from automl.config import LabelMap
from automl.data.label_map import to_original

log = logging.getLogger(__name__)


def check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = (f"{type(image).__name__} shape {getattr(image, 'shape', '?')} dtype {getattr(image, 'dtype', '?')}")
        raise ValueError(f"predict() expects an H×W×3 uint8 RGB numpy array, got {got}; "
                         "e.g. np.asarray(PIL.Image.open(path).convert('RGB'))")


class Predictor(ABC):
    """``predict(image) -> mask``; ``probabilities(image) -> (C, H, W)``; ``to_original(mask)``."""

    backend: Backend

    def __init__(self, preprocess, num_classes: int, *, precision: Precision = "fp32",
                 tta: TTASpec = NO_TTA, label_map: LabelMap | None = None):
        self.preprocess, self.num_classes, self.precision = preprocess, num_classes, precision
        self.tta, self.label_map = tta, label_map

    def with_tta(self, tta: TTASpec) -> Predictor:
        """The same model (shared, not copied) with other TTA views."""
        other = copy.copy(self)
        other.tta = tta
        return other

    def model_input(self, image: np.ndarray) -> np.ndarray:
        """(1, 3, H', W') float32: normalised and padded exactly like the bundle's preprocess.yaml."""
        x = self.preprocess(image=image)["image"]
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)

    @abstractmethod
    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, H', W') model input → (N, C, H', W') logits."""

    def view_logits(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        # Contiguous: torch ops on the cropped (strided) view are much slower than on a copy.
        return np.ascontiguousarray(self.logits(self.model_input(image))[:, :, :h, :w])

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        check_image(image)
        if self.tta.enabled:
            return tta_probabilities(image, self.tta, self.view_logits)
        return softmax(self.view_logits(image)[0])

    def predict(self, image: np.ndarray) -> np.ndarray:
        check_image(image)
        if self.tta.enabled:
            return tta_probabilities(image, self.tta, self.view_logits).argmax(0).astype(np.uint8)
        # argmax of logits = argmax of softmax; numpy's single-threaded argmax does not wake
        # torch's OpenMP pool, which costs more than the argmax itself on a small CPU
        return self.view_logits(image)[0].argmax(0).astype(np.uint8)

    def to_original(self, indices: np.ndarray) -> np.ndarray:
        """Class indices (``predict``'s output) → the training masks' own encoding, by the bundle's
        label map: raw values (uint8 or uint16), or H×W×3 uint8 RGB colours; unchanged when the
        masks held class indices."""
        return to_original(indices, self.label_map)

    def describe(self) -> str:
        tta = f" + TTA {self.tta.describe()}" if self.tta.enabled else ""
        return f"{self.backend} {self.precision}{tta}"


class TorchPredictor(Predictor):
    backend: Backend = "torch"

    def __init__(self, model: nn.Module, preprocess, num_classes: int, *, tta: TTASpec = NO_TTA,
                 device: str | torch.device = "cpu", label_map: LabelMap | None = None):
        super().__init__(preprocess, num_classes, precision="fp32", tta=tta, label_map=label_map)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @torch.inference_mode()
    def logits(self, x: np.ndarray) -> np.ndarray:
        out = self.model(torch.from_numpy(x).to(self.device))
        out = out[0] if isinstance(out, (tuple, list)) else out  # aux-head models return a tuple
        return out.float().cpu().numpy()


def ort_session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class OnnxPredictor(Predictor):
    """ONNX Runtime on the CPU.

    The final stage exports free height/width. A model exported with a fixed input size (the
    exporter fallback) gets smaller inputs padded up to it with zeros, the divisor padding's
    value; pixels near the bottom/right border may then differ slightly from the torch model.
    """

    backend: Backend = "onnxruntime"

    def __init__(self, path: Path, preprocess, num_classes: int, *, precision: Precision = "fp32",
                 tta: TTASpec = NO_TTA, threads: int | None = None, label_map: LabelMap | None = None):
        super().__init__(preprocess, num_classes, precision=precision, tta=tta, label_map=label_map)
        self.path = Path(path)
        self.session = ort_session(self.path, threads)
        shape = self.session.get_inputs()[0].shape
        self.fixed_size: tuple[int, int] | None = (
            (shape[2], shape[3]) if isinstance(shape[2], int) and isinstance(shape[3], int) else None)

    def logits(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[-2:]
        if self.fixed_size is not None and (h, w) != self.fixed_size:
            fh, fw = self.fixed_size
            if h > fh or w > fw:
                raise ValueError(f"{self.path.name} has a fixed input size {fw}x{fh}; this input is {w}x{h}. "
                                 "Resize the image, or use backend='torch' (any size)")
            x = np.pad(x, ((0, 0), (0, 0), (0, fh - h), (0, fw - w)))
        return self.session.run(None, {ONNX_INPUT: x})[0][:, :, :h, :w]
