"""``load_bundle``: a predictor from a bundle folder, torch or ONNX Runtime, fp32 or INT8."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal

from automl.bundle.layout import (
    MANIFEST,
    MODEL_DIR,
    ONNX_FILES,
    PREPROCESS,
    Manifest,
)
from automl.bundle.predictor import OnnxPredictor, Predictor, TorchPredictor
from automl.bundle.tta import NO_TTA
from automl.bundle.variants import ALL_PRECISIONS, BACKENDS, MODELS, PRECISIONS, Variant, choices
from automl.errors import AutoMLError

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


class BundleError(AutoMLError):
    """A bundle folder is incomplete, damaged, or does not offer what was asked for."""


REWRITE = "re-run `automl final <study>` to write the bundle again"


def _reason(exc: Exception) -> str:
    """One line on why a file did not load (the libraries' messages span lines or hide the cause)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(".".join(map(str, e["loc"])) + (": " if e["loc"] else "") + e["msg"]
                         for e in exc.errors()[:2])
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}".rstrip(": ")


@contextlib.contextmanager
def reading(file: Path) -> Iterator[None]:
    """Whatever goes wrong while ``file`` is loaded becomes one BundleError naming the file.

    Everything a bundle file passes through (JSON, pydantic, YAML, albumentations, safetensors,
    SMP, ONNX Runtime) raises its own types, none of them saying which file was bad."""
    if not file.exists():
        raise BundleError(f"{file} is missing: the bundle is incomplete; {REWRITE}")
    try:
        yield
    except BundleError:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        raise BundleError(f"{file} is damaged ({_reason(exc)}); {REWRITE}") from exc


def read_manifest(path: Path) -> Manifest:
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise BundleError(f"{path}: not a bundle ({MANIFEST} missing); create one with `automl final <study>`")
    with reading(path / MANIFEST):
        return Manifest.model_validate_json((path / MANIFEST).read_text())


def load_preprocess(path: Path):
    import warnings

    import albumentations as A

    with warnings.catch_warnings(), reading(Path(path) / PREPROCESS):
        # albumentations 2.0.8 saves PadIfNeeded's derived `padding` field and warns about it on
        # load; the loaded pipeline is identical (checked in tests/test_bundle.py).
        warnings.filterwarnings("ignore", message=r"Argument\(s\) 'padding' are not valid")
        return A.load(str(Path(path) / PREPROCESS), data_format="yaml")


def load_torch_model(model_dir: Path) -> nn.Module:
    """The SMP model, each of its files checked first, so that a damaged one is named."""
    import json

    from huggingface_hub.constants import CONFIG_NAME, SAFETENSORS_SINGLE_FILE
    from safetensors import safe_open

    from automl.trial.checkpoint import TRIAL_CONFIG_FILE, load_model

    for name in (CONFIG_NAME, TRIAL_CONFIG_FILE):
        with reading(model_dir / name):
            json.loads((model_dir / name).read_text())
    with reading(model_dir / SAFETENSORS_SINGLE_FILE):
        with safe_open(str(model_dir / SAFETENSORS_SINGLE_FILE), "pt"):  # header + size check, no tensor read
            pass
    # All present: without config.json, from_pretrained would take the folder for a Hub repo id.
    with reading(model_dir):
        return load_model(model_dir)[0]


def choose_variant(m: Manifest, backend: str = "auto", precision: str = "auto", tta: bool | None = None) -> Variant:
    """The variant ``load_bundle`` serves: "auto" and None take the bundle's default, and a backend
    asked for without a precision gets the default precision if it runs it, else its first one."""
    for name, value, allowed in (("backend", backend, BACKENDS), ("precision", precision, ALL_PRECISIONS)):
        if value != "auto" and value not in allowed:
            raise BundleError(f"{name} must be {choices(('auto', *allowed))}, not {value!r}")
    backend = m.default_backend if backend == "auto" else backend
    if precision == "auto":
        offered = PRECISIONS[backend]
        precision = m.default_precision if m.default_precision in offered else offered[0]
    try:
        return Variant(backend, precision, m.tta_kept if tta is None else bool(tta))
    except ValueError as exc:  # a precision the backend does not run
        raise BundleError(str(exc)) from None


def model_folder(path: Path, m: Manifest, model: str = "auto") -> Path:
    """The bundle folder of ``model`` ("auto": the bundle's default, "teacher" or "student"):
    a student ships as a whole bundle of its own in ``student/``."""
    if model not in ("auto", *MODELS):
        raise BundleError(f"model must be {choices(('auto', *MODELS))}, not {model!r}")
    chosen = m.default_model if model == "auto" else model
    if chosen == "teacher":
        return path
    if m.student is None:
        raise BundleError(f"{path} has no student (final.distill was not set when it was written); use model='teacher'")
    return path / m.student


def load_bundle(path: str | Path, *, backend: Literal["auto", "torch", "onnxruntime"] = "auto",
                precision: Literal["auto", "fp32", "int8"] = "auto", tta: bool | None = None,
                threads: int | None = None, device: str = "cpu",
                model: Literal["auto", "teacher", "student"] = "auto") -> Predictor:
    """A predictor for the bundle at ``path``.

    - ``backend``/``precision`` "auto": the bundle's default (ONNX Runtime INT8 when the INT8
      model passed its accuracy check, else ONNX Runtime fp32; torch if there is no ONNX).
    - ``tta``: None keeps the final stage's decision; True/False forces the evaluated views on/off.
    - ``threads``: ONNX Runtime intra-op threads (torch uses its global setting).
    - ``model``: "auto" serves the bundle's default model; "teacher" the retrained model,
      "student" the distilled one (``final.distill``).

    >>> predictor = load_bundle("runs/demo/bundle")              # doctest: +SKIP
    >>> mask = predictor.predict(rgb_uint8_image)                # H×W uint8 class indices
    >>> original = predictor.to_original(mask)                   # the masks' raw values or colours
    """
    path = Path(path)
    m = read_manifest(path)
    folder = model_folder(path, m, model)
    if folder != path:
        return load_bundle(folder, backend=backend, precision=precision, tta=tta, threads=threads, device=device,
                           model="teacher")
    v = choose_variant(m, backend, precision, tta)
    tta_spec = m.tta if v.tta else NO_TTA
    preprocess = load_preprocess(path)
    n = len(m.classes)
    if v.backend == "torch":
        return TorchPredictor(load_torch_model(path / MODEL_DIR), preprocess, n, tta=tta_spec, device=device,
                              label_map=m.label_map)
    name = ONNX_FILES[v.precision]
    shipped = m.int8_file if v.precision == "int8" else m.onnx is not None
    if not (path / name).is_file() and not shipped:
        raise BundleError(f"{path / name} is missing (the ONNX export or quantization failed; see report.md); "
                          "use backend='torch'" + (" or precision='fp32'" if v.precision == "int8" else ""))
    with reading(path / name):
        predictor = OnnxPredictor(path / name, preprocess, n, precision=v.precision, tta=tta_spec, threads=threads,
                                  label_map=m.label_map)
    if v.precision == "int8" and not m.int8_accepted:
        log.warning("%s: this INT8 model failed the accuracy check of the final stage (see report.md)", path.name)
    return predictor
