"""Export the trained model to ONNX (fp32) and check it against torch with ONNX Runtime.

Tried in order, the first that exports *and* matches torch wins:
1. the dynamo exporter (``torch.onnx.export(..., dynamo=True)``) with free batch and H, W
   (H, W multiples of the pad divisor);
2. dynamo at the fixed input size;
3. the legacy TorchScript exporter (``dynamo=False``), dynamic then fixed — for models the
   dynamo exporter cannot trace (checked to match torch on SMP Unet/Linknet/FPN-resnet18 too).
The graph has one input ``input`` (normalised, padded) and one output ``logits``; an aux
classification head is dropped.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from automl.bundle.layout import ONNX_INPUT, ONNX_OUTPUT
from automl.bundle.predictor import ort_session
from automl.errors import AutoMLError

log = logging.getLogger(__name__)
MAX_SIDE = 8192
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ExportError(AutoMLError):
    """No exporter produced an ONNX model that matches torch."""


class _LogitsOnly(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


@dataclass
class OnnxExport:
    path: Path
    exporter: str
    dynamic: bool
    input_size: tuple[int, int]
    max_abs_diff: float
    opset: int | None
    notes: list[str] = field(default_factory=list)


def _dynamic_shapes(divisor: int) -> dict:
    from torch.export import Dim

    def side(name: str):
        if divisor == 1:
            return Dim(name, min=1, max=MAX_SIDE)
        return divisor * Dim(f"{name}_blocks", min=1, max=MAX_SIDE // divisor)

    return {"x": {0: Dim("batch", min=1, max=256), 2: side("height"), 3: side("width")}}


def _export(model: nn.Module, x: torch.Tensor, path: Path, exporter: str, dynamic: bool, divisor: int) -> None:
    kwargs: dict = dict(input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT])
    if exporter == "dynamo":
        kwargs.update(dynamo=True, external_data=False, verbose=False)
        if dynamic:
            kwargs["dynamic_shapes"] = _dynamic_shapes(divisor)
    else:
        kwargs.update(dynamo=False, opset_version=17)
        if dynamic:
            kwargs["dynamic_axes"] = {ONNX_INPUT: {0: "batch", 2: "height", 3: "width"},
                                      ONNX_OUTPUT: {0: "batch", 2: "height", 3: "width"}}
    # The exporters print progress, log every graph pass and warn for every model; keep the
    # run's log readable (failures still raise).
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet_loggers():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), **kwargs)


# torch._guards / torch._dynamo log a failed trace at ERROR with its whole traceback (hundreds of
# lines for a dynamic-shape guard the model violates) before the exception reaches us; the
# exception is what counts, and export_onnx logs it as one line before trying the next exporter.
_QUIET = {"onnxscript": logging.WARNING, "onnx_ir": logging.WARNING, "torch.onnx": logging.WARNING,
          "torch.export": logging.WARNING, "torch._guards": logging.CRITICAL, "torch._dynamo": logging.CRITICAL}


@contextlib.contextmanager
def _quiet_loggers(levels_by_name: dict[str, int] = _QUIET):
    loggers = [logging.getLogger(n) for n in levels_by_name]
    levels = [lg.level for lg in loggers]
    for lg, quiet in zip(loggers, levels_by_name.values(), strict=True):
        lg.setLevel(quiet)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _check(model: nn.Module, path: Path, sizes: list[tuple[int, int]], batch: int) -> float:
    """Largest |ORT - torch| on random inputs, relative to the logits' scale."""
    session = ort_session(path)
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for h, w in sizes:
        x = torch.randn(batch, 3, h, w, generator=gen)
        with torch.inference_mode():
            ref = model(x).numpy()
        got = session.run(None, {ONNX_INPUT: x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"ONNX output shape {got.shape} != torch {ref.shape} at {h}x{w}")
        worst = max(worst, float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max()))))
    return worst


def _opset(path: Path) -> int | None:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def export_onnx(model: nn.Module, path: Path, input_size: tuple[int, int], divisor: int, *,
                tolerance: float = 1e-3) -> OnnxExport:
    wrapped = _LogitsOnly(model).eval().cpu()
    x = torch.zeros(1, 3, *input_size)
    h, w = input_size
    notes: list[str] = []
    for exporter, dynamic in (("dynamo", True), ("dynamo", False), ("legacy", True), ("legacy", False)):
        label = f"{exporter} ({'dynamic' if dynamic else 'fixed'} shape)"
        try:
            _export(wrapped, x, path, exporter, dynamic, divisor)
            sizes = [(h, w), (h + divisor, w + 2 * divisor)] if dynamic else [(h, w)]
            diff = _check(wrapped, path, sizes, batch=2 if dynamic else 1)
        except Exception as exc:  # noqa: BLE001 - any exporter failure: try the next one
            text = _ANSI.sub("", str(exc)).strip()  # torch colours its export errors
            msg = text.splitlines()[0][:300] if text else ""
            notes.append(f"{label} failed: {type(exc).__name__}: {msg}")
            log.warning("ONNX export, %s", notes[-1])
            continue
        if diff > tolerance:
            notes.append(f"{label}: ONNX differs from torch by {diff:.2e} (relative), above {tolerance:g}")
            log.warning("ONNX export, %s", notes[-1])
            continue
        log.info("exported ONNX with the %s exporter, %s shape (max relative diff to torch %.1e)", exporter,
                 "dynamic" if dynamic else f"fixed {w}x{h}", diff)
        return OnnxExport(path, exporter, dynamic, input_size, diff, _opset(path), notes)
    raise ExportError("ONNX export failed with every exporter:\n  " + "\n  ".join(notes))
