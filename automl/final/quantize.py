"""INT8 post-training quantization with ONNX Runtime, with accuracy-checked fallbacks.

Recipe (QDQ format, uint8 activations, int8 per-channel weights): uint8 activations run on
the VNNI/AVX2 u8s8 kernels; ORT's default int8 activations are markedly slower on such CPUs.
``quant_pre_process`` (shape inference + graph optimisation) runs first, as ORT recommends.

Each attempt is scored by the caller (mIoU on the same split as fp32). The first attempt whose
drop is within ``max_drop`` is chosen; if none is, the one with the smallest drop is kept as a
file but *rejected* (the bundle does not make it the default).

Attempts, cheapest first:
1. MinMax calibration, every node quantized (the plain recipe);
2. MinMax, with the first convolution (raw-pixel statistics) and the head (last convolution
   and everything after it: the logits' resize) kept in fp32 — the usual sources of error;
3. Percentile (99.999) calibration + fp32 ends: clips activation outliers MinMax stretches to;
4. Entropy (KL) calibration + fp32 ends.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from automl.bundle.layout import ONNX_INPUT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantAttempt:
    name: str
    calibration: str      # onnxruntime.quantization.CalibrationMethod member name
    fp32_ends: bool       # keep the first conv and the head in fp32


DEFAULT_ATTEMPTS: tuple[QuantAttempt, ...] = (
    QuantAttempt("minmax", "MinMax", False),
    QuantAttempt("minmax + fp32 first conv/head", "MinMax", True),
    QuantAttempt("percentile + fp32 first conv/head", "Percentile", True),
    QuantAttempt("entropy + fp32 first conv/head", "Entropy", True),
)


@dataclass
class AttemptResult:
    name: str
    calibration: str
    excluded_nodes: list[str]
    miou: float | None = None
    drop: float | None = None
    passed: bool = False
    seconds: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("miou", "drop", "seconds"):
            if d[k] is not None:
                d[k] = round(d[k], 6)
        return d


@dataclass
class Int8Outcome:
    accepted: bool
    chosen: str | None          # attempt name of the shipped file
    path: Path | None           # the shipped INT8 file (None: every attempt errored)
    reference_miou: float
    max_drop: float
    attempts: list[AttemptResult] = field(default_factory=list)
    pre_process: str = ""
    skipped: list[str] = field(default_factory=list)  # fallbacks not tried: no time left in the run's budget

    @property
    def chosen_result(self) -> AttemptResult | None:
        return next((a for a in self.attempts if a.name == self.chosen), None)


class CalibrationReader:
    """Feeds preprocessed calibration inputs to ORT's calibrator, one image per batch."""

    def __init__(self, inputs: Sequence[np.ndarray]):
        self.inputs = list(inputs)
        self._it = iter(self.inputs)

    def get_next(self) -> dict | None:
        x = next(self._it, None)
        return None if x is None else {ONNX_INPUT: x}

    def rewind(self) -> None:
        self._it = iter(self.inputs)


@contextlib.contextmanager
def _quiet():
    # ORT's quantizer logs through the root logger and warnings for every weight it cannot make
    # per-channel (biases); the outcome is summarised in the report instead.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


@contextlib.contextmanager
def _working_dir(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def pre_process(fp32_path: Path, out_path: Path) -> tuple[Path, str]:
    """``quant_pre_process`` (shape inference + ORT graph optimisation); returns (model, what ran).

    ORT's symbolic shape inference gives up on some dynamic-shape graphs (e.g. FPN's upsampling
    to a computed size); ONNX's own shape inference is then enough for the quantizer.
    """
    from onnxruntime.quantization import quant_pre_process

    src, dst = Path(fp32_path).resolve(), Path(out_path).resolve()
    for label, kwargs in (("quant_pre_process", {}),
                          ("quant_pre_process without symbolic shapes", {"skip_symbolic_shape": True})):
        try:
            # When symbolic shape inference gives up, ORT saves a debug copy of the model (with
            # its weights) into the current directory: run it from the work folder instead.
            with _quiet(), _working_dir(dst.parent):
                quant_pre_process(str(src), str(dst), **kwargs)
            return dst, label
        except Exception as exc:  # noqa: BLE001 - try the next, lighter pre-processing
            log.info("INT8: %s failed (%s: %s)", label, type(exc).__name__, exc)
    log.warning("INT8: quant_pre_process failed; quantizing the exported graph as it is")
    return fp32_path, "none (quant_pre_process failed)"


def end_nodes(model_path: Path) -> list[str]:
    """Names of the first Conv and of the last Conv plus every node after it (graph order is
    topological in ONNX): the layers most sensitive to 8-bit error in a segmentation net."""
    import onnx

    nodes = onnx.load(str(model_path), load_external_data=False).graph.node
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    if not convs:
        return []
    return [nodes[convs[0]].name, *(n.name for n in nodes[convs[-1]:])]


def quantize(pre_path: Path, out_path: Path, calibration: CalibrationReader, attempt: QuantAttempt) -> list[str]:
    """Write an INT8 QDQ model; returns the nodes left in fp32."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    exclude = end_nodes(pre_path) if attempt.fp32_ends else []
    calibration.rewind()
    with _quiet():
        quantize_static(
            str(pre_path), str(out_path), calibration,
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod[attempt.calibration],
            nodes_to_exclude=exclude or None,
        )
    return exclude


# What one attempt costs against a MinMax one: histogram calibrators (percentile, entropy) collect
# every activation's histogram; on a 512x512 model they took 3-4x as long as MinMax.
CALIBRATOR_COST = {"MinMax": 1.0, "Percentile": 4.0, "Entropy": 4.0}


def _expected_s(attempt: QuantAttempt, done: list[AttemptResult]) -> float:
    """An attempt's expected seconds, from the attempts already run and their calibrators' costs."""
    per_unit = [a.seconds / CALIBRATOR_COST.get(a.calibration, 1.0) for a in done if a.seconds]
    return max(per_unit, default=0.0) * CALIBRATOR_COST.get(attempt.calibration, 1.0)


def quantize_with_fallbacks(fp32_path: Path, workdir: Path, calibration_inputs: Sequence[np.ndarray],
                            score: Callable[[Path], float], reference_miou: float, max_drop: float,
                            attempts: Sequence[QuantAttempt] = DEFAULT_ATTEMPTS,
                            deadline: float | None = None) -> Int8Outcome:
    """Try ``attempts`` in order until one loses at most ``max_drop`` mIoU against ``reference_miou``.
    ``deadline`` (time.monotonic()): a fallback attempt starts only if it is expected to end by
    then (the first always runs)."""
    if not calibration_inputs:
        raise ValueError("INT8 calibration needs at least one image")
    workdir.mkdir(parents=True, exist_ok=True)
    pre, pre_label = pre_process(fp32_path, workdir / "model.pre.onnx")
    reader = CalibrationReader(calibration_inputs)
    outcome = Int8Outcome(False, None, None, reference_miou, max_drop, pre_process=pre_label)
    best: tuple[float, Path, str] | None = None
    for k, attempt in enumerate(attempts):
        if k and deadline is not None and time.monotonic() + _expected_s(attempt, outcome.attempts) > deadline:
            outcome.skipped = [a.name for a in attempts[k:]]
            log.warning("INT8: %d fallback attempt(s) not tried, to end within the run's budget: %s",
                        len(outcome.skipped), ", ".join(outcome.skipped))
            break
        out = workdir / f"model.int8.{k}.onnx"
        t0 = time.perf_counter()
        result = AttemptResult(attempt.name, attempt.calibration, [])
        outcome.attempts.append(result)
        try:
            result.excluded_nodes = quantize(pre, out, reader, attempt)
            result.miou = score(out)
        except Exception as exc:  # noqa: BLE001 - one failing calibrator must not stop the others
            result.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
            log.warning("INT8 %s failed: %s", attempt.name, result.error)
            continue
        finally:
            result.seconds = time.perf_counter() - t0
        result.drop = reference_miou - result.miou
        result.passed = result.drop <= max_drop
        log.info("INT8 %s: mIoU %.4f (drop %+.4f, limit %.4f) %s", attempt.name, result.miou, result.drop,
                 max_drop, "passes" if result.passed else "fails")
        if best is None or result.drop < best[0]:
            best = (result.drop, out, attempt.name)
        if result.passed:
            outcome.accepted, outcome.chosen, outcome.path = True, attempt.name, out
            return outcome
    if best is not None:
        outcome.chosen, outcome.path = best[2], best[1]
        log.warning("INT8 rejected: the best attempt (%s) loses %.4f mIoU, more than %.4f", best[2], best[0],
                    max_drop)
    return outcome
