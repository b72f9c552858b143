"""``load_bundle``: a predictor from a bundle folder, torch or ONNX Runtime, fp32 or INT8."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from automl.bundle.layout import (
    MANIFEST,
    MODEL_DIR,
    ONNX_FP32,
    ONNX_INT8,
    PREPROCESS,
    Manifest,
)
from automl.bundle.predictor import OnnxPredictor, Predictor, TorchPredictor
from automl.bundle.tta import NO_TTA
from automl.errors import AutoMLError

log = logging.getLogger(__name__)


class BundleError(AutoMLError):
    """A bundle folder is incomplete or does not offer what was asked for."""


def read_manifest(path: Path) -> Manifest:
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise BundleError(f"{path}: not a bundle ({MANIFEST} missing); create one with `automl final <study>`")
    return Manifest.model_validate_json((path / MANIFEST).read_text())


def load_preprocess(path: Path):
    import warnings

    import albumentations as A

    with warnings.catch_warnings():
        # albumentations 2.0.8 saves PadIfNeeded's derived `padding` field and warns about it on
        # load; the loaded pipeline is identical (checked in tests/test_bundle.py).
        warnings.filterwarnings("ignore", message=r"Argument\(s\) 'padding' are not valid")
        return A.load(str(Path(path) / PREPROCESS), data_format="yaml")


def load_bundle(path: str | Path, *, backend: Literal["auto", "torch", "onnxruntime"] = "auto",
                precision: Literal["auto", "fp32", "int8"] = "auto", tta: bool | None = None,
                threads: int | None = None, device: str = "cpu") -> Predictor:
    """A predictor for the bundle at ``path``.

    - ``backend``/``precision`` "auto": the bundle's default (ONNX Runtime INT8 when the INT8
      model passed its accuracy check, else ONNX Runtime fp32; torch if there is no ONNX).
    - ``tta``: None keeps the final stage's decision; True/False forces the evaluated views on/off.
    - ``threads``: ONNX Runtime intra-op threads (torch uses its global setting).

    >>> predictor = load_bundle("runs/demo/bundle")              # doctest: +SKIP
    >>> mask = predictor.predict(rgb_uint8_image)                # H×W uint8 class indices
    """
    path = Path(path)
    m = read_manifest(path)
    backend = m.default_backend if backend == "auto" else backend
    if precision == "auto":
        precision = m.default_precision if backend == "onnxruntime" else "fp32"
    tta_spec = m.tta if (tta is None and m.tta_kept) or tta else NO_TTA
    preprocess = load_preprocess(path)
    n = len(m.classes)
    if backend == "torch":
        if precision != "fp32":
            raise BundleError("precision 'int8' needs backend='onnxruntime'; the torch model is fp32")
        from automl.trial.checkpoint import load_model

        model, _, _ = load_model(path / MODEL_DIR)
        return TorchPredictor(model, preprocess, n, tta=tta_spec, device=device)
    if backend != "onnxruntime":
        raise BundleError(f"backend must be 'auto', 'torch' or 'onnxruntime', not {backend!r}")
    name = ONNX_INT8 if precision == "int8" else ONNX_FP32
    if not (path / name).is_file():
        raise BundleError(f"{path / name} is missing (the ONNX export or quantization failed; see report.md); "
                          "use backend='torch'" + (" or precision='fp32'" if precision == "int8" else ""))
    if precision == "int8" and not m.int8_accepted:
        log.warning("%s: this INT8 model failed the accuracy check of the final stage (see report.md)", path.name)
    return OnnxPredictor(path / name, preprocess, n, precision=precision, tta=tta_spec, threads=threads)
