"""Bundle variants (automl.bundle.variants): keys and labels, order, parse errors, the variant
``load_bundle`` chooses, and the keys and labels of a bundle written by the final stage.

Keys and labels are pinned to the strings every report.json and report.md so far has used:
readers of those files (benchmarks, dashboards, people) look them up by these names."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from automl.bundle.layout import Manifest
from automl.bundle.load import BundleError, choose_variant
from automl.bundle.tta import TTASpec
from automl.bundle.variants import ORT_FP32, ORT_INT8, TORCH_FP32, VARIANTS, Variant
from tests.test_final import one_torch_thread, rejected  # noqa: F401 - fixtures: the final run is reused

# Key → label of every variant a teacher-only bundle can report, in report order.
TEACHER = {
    "torch_fp32": "torch fp32",
    "torch_fp32_tta": "torch fp32 + TTA",
    "ort_fp32": "ORT fp32",
    "ort_fp32_tta": "ORT fp32 + TTA",
    "ort_int8": "ORT int8",
    "ort_int8_tta": "ORT int8 + TTA",
}


def test_teacher_keys_and_labels_are_the_ones_reports_use():
    teacher = [v for v in VARIANTS if v.model == "teacher"]
    assert {v.key: v.label for v in teacher} == TEACHER
    assert [v.key for v in teacher] == list(TEACHER)  # report order
    assert (TORCH_FP32.key, ORT_FP32.key, ORT_INT8.key) == ("torch_fp32", "ort_fp32", "ort_int8")


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.key)
def test_every_variant_round_trips(variant):
    assert Variant.parse(variant.key) is variant
    assert variant == Variant(variant.backend, variant.precision, variant.tta, variant.model)
    assert variant.with_tta(variant.tta) == variant and variant.with_tta(not variant.tta).tta is not variant.tta
    assert re.fullmatch(r"[a-z0-9_]+", variant.key), variant.key  # a plain JSON key, attribute-safe


def test_keys_and_labels_are_unique_and_students_are_named():
    assert len({v.key for v in VARIANTS}) == len({v.label for v in VARIANTS}) == len(VARIANTS)
    student = Variant("onnxruntime", "int8", tta=True, model="student")
    assert (student.key, student.label) == ("student_ort_int8_tta", "student ORT int8 + TTA")
    assert {v.key for v in VARIANTS if v.model == "student"} == {f"student_{k}" for k in TEACHER}


def test_order_follows_the_axes():
    assert sorted(reversed(VARIANTS)) == list(VARIANTS)
    assert TORCH_FP32 < TORCH_FP32.with_tta() < ORT_FP32 < ORT_INT8 < ORT_INT8.with_tta()
    assert max(v for v in VARIANTS if v.model == "teacher") < min(v for v in VARIANTS if v.model == "student")
    with pytest.raises(TypeError):
        _ = TORCH_FP32 < "torch_fp32"


@pytest.mark.parametrize("key", ["ort_int4", "", "ORT int8", "torch_int8", "ort_int8_TTA", "teacher_ort_int8"])
def test_parse_refuses_unknown_keys(key):
    with pytest.raises(ValueError, match=rf"unknown bundle variant {re.escape(repr(key))}; known: torch_fp32, "):
        Variant.parse(key)


@pytest.mark.parametrize(("fields", "message"), [
    (("torch", "int8"), "precision 'int8' needs backend='onnxruntime'; the torch model is fp32"),
    (("tensorrt", "fp32"), "backend must be 'torch' or 'onnxruntime', not 'tensorrt'"),
    (("onnxruntime", "fp16"), "precision must be 'fp32' or 'int8', not 'fp16'"),
    (("onnxruntime", "fp32", 1), "tta must be True or False, not 1"),
    (("onnxruntime", "fp32", False, "pupil"), "model must be 'teacher' or 'student', not 'pupil'"),
])
def test_impossible_variants_are_refused(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Variant(*fields)


def _manifest(backend: str, precision: str, tta_kept: bool) -> Manifest:
    return Manifest(study="s", classes=("a", "b"), ignore_index=255, pad_divisor=32, input_size=(32, 32),
                    tta=TTASpec(hflip=True), tta_kept=tta_kept, default_backend=backend, default_precision=precision)


def _as_load_bundle_chose_before(m: Manifest, backend: str, precision: str, tta: bool | None) -> tuple:
    """load_bundle's choice as it was written before variants existed (the reference)."""
    backend = m.default_backend if backend == "auto" else backend
    if precision == "auto":
        precision = m.default_precision if backend == "onnxruntime" else "fp32"
    return backend, precision, bool((tta is None and m.tta_kept) or tta)


@pytest.mark.parametrize("default", [("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"),
                                     ("torch", "int8")])  # the last: a hand-edited manifest
def test_load_bundle_chooses_as_before(default):
    for kept, backend, precision, tta in itertools.product((False, True), ("auto", "torch", "onnxruntime"),
                                                          ("auto", "fp32", "int8"), (None, False, True)):
        m = _manifest(*default, kept)
        if (default[0] if backend == "auto" else backend) == "torch" and precision == "int8":
            with pytest.raises(BundleError, match="precision 'int8' needs backend='onnxruntime'"):
                choose_variant(m, backend, precision, tta)
            continue
        v = choose_variant(m, backend, precision, tta)
        assert (v.backend, v.precision, v.tta) == _as_load_bundle_chose_before(m, backend, precision, tta), \
            (default, kept, backend, precision, tta)


def test_load_bundle_names_a_bad_argument():
    m = _manifest("onnxruntime", "int8", True)
    with pytest.raises(BundleError, match=r"backend must be 'auto', 'torch' or 'onnxruntime', not 'tpu'"):
        choose_variant(m, "tpu", "int8")
    with pytest.raises(BundleError, match=r"precision must be 'auto', 'fp32' or 'int8', not 'fp16'"):
        choose_variant(m, "onnxruntime", "fp16")


def test_a_bundle_from_the_final_stage_keeps_its_keys_and_labels(rejected):  # noqa: F811 - the fixture
    """INT8 rejected, TTA kept: every variant is built, and the default is ORT fp32 + TTA."""
    _, res = rejected
    report = json.loads((res.bundle_dir / "report.json").read_text())
    scored = ["torch_fp32", "torch_fp32_tta", "ort_fp32", "ort_int8", "ort_int8_tta"]  # ORT fp32 + TTA: as torch
    assert list(report["evaluation"]["val"]) == scored
    # the holdout: the default (ORT fp32 + TTA), the same without TTA and the torch model, once each
    assert list(report["holdout"]["scores"]) == ["torch_fp32", "ort_fp32", "ort_fp32_tta"]
    assert list(report["latency"]["results"]) == list(TEACHER)
    assert list(report["latency"]["model_only"]) == list(report["tta"]["latency_cost_ms"]) == \
        ["torch_fp32", "ort_fp32", "ort_int8"]
    assert report["default_predictor"] == {"backend": "onnxruntime", "precision": "fp32", "tta": True,
                                           "variant": "ORT fp32 + TTA"}
    manifest = json.loads((res.bundle_dir / "bundle.json").read_text())
    assert (manifest["default_backend"], manifest["default_precision"], manifest["tta_kept"]) == \
        ("onnxruntime", "fp32", True)
    md = (res.bundle_dir / "report.md").read_text()
    summary = md.split("## Summary")[1].split("\n\n")[1].splitlines()[2:]
    assert [row.split(" | ")[0].lstrip("| ") for row in summary] == list(TEACHER.values())
    assert "Bundle default: **ORT fp32 + TTA**" in md
    assert "| class | torch fp32 | torch fp32 + TTA | ORT fp32 | ORT int8 | ORT int8 + TTA |" in md
    assert re.search(r"Latency cost: torch fp32 \+[\d.]+ ms, ORT fp32 \+[\d.]+ ms, ORT int8 \+[\d.]+ ms\.", md)


@pytest.mark.parametrize("default, scored", [
    (ORT_INT8.with_tta(), [TORCH_FP32, ORT_INT8, ORT_INT8.with_tta()]),
    (ORT_INT8, [TORCH_FP32, ORT_INT8]),
    (ORT_FP32.with_tta(), [TORCH_FP32, ORT_FP32, ORT_FP32.with_tta()]),
    (TORCH_FP32.with_tta(), [TORCH_FP32, TORCH_FP32.with_tta()]),
])
def test_the_holdout_scores_what_ships_and_its_references_not_the_onnx_copy_of_torch(default, scored):
    """The holdout scores the default, the same without TTA and the torch model, in report order;
    ORT fp32 (torch's model, checked on val) only when it is what ships."""
    from automl.final.pipeline import holdout_variants

    assert holdout_variants(default) == scored
    assert holdout_variants(default, [ORT_INT8.with_tta(), ORT_INT8, TORCH_FP32]) == \
        [k for k in [ORT_INT8.with_tta(), ORT_INT8, TORCH_FP32] if k in scored]
