"""The final stage: TTA on odd sizes, INT8 fallbacks and a forced rejection, report contents.

One real (tiny) final run is shared by the tests below; it retrains a config injected as the
study's only completed trial, so no search is needed here (tests/test_bundle.py runs one).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml

from automl.bundle import TTASpec, load_bundle
from automl.bundle.predictor import OnnxPredictor, TorchPredictor
from automl.config import StudyFile, load_study_file
from automl.errors import AutoMLError
from automl.final import export as export_mod
from automl.final import run_final
from automl.final.quantize import QuantAttempt, quantize_with_fallbacks
from automl.final.retrain import load_retrained
from automl.study.runner import load_data
from automl.study.storage import open_storage, resolve_url
from automl.trial.augment import eval_transform
from automl.trial.latency import cpu_model_name
from automl.trial.model import build_model
from automl.trial_config import (
    AugmentSpec,
    DataSpec,
    LossSpec,
    ModelSpec,
    OptimizerSpec,
    ScheduleSpec,
    TrialConfig,
)
from tests.conftest import TINY_SPACE, tiny_study_doc, write_yaml

VARIANTS_VAL = {"torch_fp32", "torch_fp32_tta", "ort_fp32", "ort_int8", "ort_int8_tta"}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, OpenMP barriers with 2 threads stall
    several-fold whenever another process holds a core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(sf: StudyFile) -> TrialConfig:
    """With an aux classification head: the ONNX graph must keep only the mask logits."""
    return TrialConfig(
        seed=7, epochs=2, batch_size=4, data=DataSpec(classes=tuple(sf.data.classes)),
        model=ModelSpec(arch="Unet", encoder="resnet18", encoder_depth=3, aux_head=True),
        optimizer=OptimizerSpec(name="adamw", lr=5e-3), schedule=ScheduleSpec(name="cosine"),
        loss=LossSpec(aux=0.2), augment=AugmentSpec(crop_height=32, crop_width=32))


def study_with_trial(sf: StudyFile, cfg: TrialConfig, value: float = 0.3) -> optuna.Study:
    """A study holding one completed trial with ``cfg``, as `automl search` would record it."""
    url = resolve_url(sf)
    Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=sf.name, storage=open_storage(url, sf.storage), direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=value, user_attrs={"config": cfg.to_dict(), "params_m": 1.0}))
    return study


@pytest.fixture(scope="module")
def rejected(tmp_path_factory):
    """A final run whose INT8 model must be rejected and whose TTA must be kept: limits a study file
    cannot hold (both must be >= 0) force the two decisions whatever the tiny model learns."""
    root = tmp_path_factory.mktemp("final")
    write_yaml(root / "space.yaml", TINY_SPACE)
    path = write_yaml(root / "tiny.yaml", tiny_study_doc("tiny", **{
        "data.synthetic.n_test": 2, "final.epochs": 1, "final.latency_runs": 5,
        # calibrate on all 16 training images: with 4, val logits of this barely trained model
        # (up to ±300) left the calibrated range and clipped (mean error 17 % of their std)
        "final.int8.calibration_images": 16, "final.latency_threads": 1}))
    sf = load_study_file(path, runs_root=root / "runs")
    sf.final.int8.max_drop = -1.0  # every INT8 attempt fails
    sf.final.tta.min_gain = -1.0   # any TTA result is kept
    study_with_trial(sf, tiny_config(sf))
    return sf, run_final(sf, out=root / "bundle")


def test_tta_on_odd_sizes_is_the_mean_of_flipped_views():
    cfg_data = DataSpec(classes=("a", "b", "c"))
    torch.manual_seed(0)
    # Linknet needs H, W divisible by 32: the predictor pads and crops back.
    model = build_model(ModelSpec(arch="Linknet", encoder="resnet18", encoder_depth=3), 3).eval()
    with pytest.raises(RuntimeError):
        model(torch.zeros(1, 3, 37, 53))
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    plain = TorchPredictor(model, eval_transform(cfg_data), 3)
    hflip = plain.with_tta(TTASpec(hflip=True))
    p0 = plain.probabilities(image)
    p1 = plain.probabilities(np.ascontiguousarray(image[:, ::-1]))[:, :, ::-1]
    np.testing.assert_allclose(hflip.probabilities(image), (p0 + p1) / 2, atol=1e-5)
    many = plain.with_tta(TTASpec(hflip=True, vflip=True, scales=(0.5, 1.0, 1.3)))
    probs = many.probabilities(image)
    assert probs.shape == (3, 37, 53)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    mask = many.predict(image)
    assert mask.shape == (37, 53) and mask.dtype == np.uint8 and mask.max() < 3
    assert not np.array_equal(probs, p0)  # the views did change the result


def test_export_falls_back_and_a_fixed_shape_model_pads_inputs(monkeypatch, tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch="Linknet", encoder="resnet18", encoder_depth=3), 3).eval()
    real_export = export_mod._export
    failing = {("dynamo", True), ("dynamo", False)}

    def export(m, x, path, exporter, dynamic, divisor):
        if (exporter, dynamic) in failing:
            raise RuntimeError(f"simulated {exporter} failure")
        real_export(m, x, path, exporter, dynamic, divisor)

    monkeypatch.setattr(export_mod, "_export", export)
    out = export_mod.export_onnx(model, tmp_path / "a.onnx", (64, 64), 32)
    assert (out.exporter, out.dynamic) == ("legacy", True) and len(out.notes) == 2
    failing.add(("legacy", True))
    out = export_mod.export_onnx(model, tmp_path / "b.onnx", (64, 64), 32)
    assert (out.exporter, out.dynamic) == ("legacy", False) and out.max_abs_diff < 1e-3
    pre = eval_transform(DataSpec(classes=("a", "b", "c")))
    fixed = OnnxPredictor(out.path, pre, 3)
    assert fixed.fixed_size == (64, 64)
    image = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    ref = TorchPredictor(model, pre, 3).view_logits(image)
    np.testing.assert_allclose(fixed.view_logits(image), ref, atol=1e-3 * max(1.0, float(np.abs(ref).max())))
    small = fixed.predict(image[:20, :30])  # padded to 32x32 by preprocess, then to 64x64 for the graph
    assert small.shape == (20, 30)
    with pytest.raises(ValueError, match="fixed input size 64x64"):
        fixed.predict(np.zeros((70, 40, 3), np.uint8))
    failing.add(("legacy", False))
    with pytest.raises(export_mod.ExportError, match="every exporter"):
        export_mod.export_onnx(model, tmp_path / "c.onnx", (64, 64), 32)


def test_exporter_tracebacks_stay_out_of_the_log(caplog):
    """torch logs a failed dynamic-shape trace at ERROR with its whole traceback; the fallback
    chain reports each failure as one line of its own instead."""
    guards = logging.getLogger("torch._guards")
    with caplog.at_level(logging.DEBUG), export_mod._quiet_loggers():
        guards.error("Traceback (most recent call last): ...")
        logging.getLogger("torch.onnx").info("graph pass 1 of 40")
    assert not caplog.records
    guards.error("after the export")
    assert [r.getMessage() for r in caplog.records] == ["after the export"]


def test_tta_spec_views_and_validation():
    assert TTASpec().views() == [(1.0, False, False)] and not TTASpec().enabled
    views = TTASpec(hflip=True, scales=(0.75,)).views()
    assert views[0] == (1.0, False, False) and len(views) == 4  # identity always included
    with pytest.raises(ValueError, match="scales must be > 0"):
        TTASpec(scales=(0.0,))


def test_forced_int8_rejection_is_reported_and_not_the_default(rejected, caplog):
    sf, res = rejected
    q = res.report["int8"]
    assert q["accepted"] is False and q["max_drop"] == -1.0
    assert [a["calibration"] for a in q["attempts"]] == ["MinMax", "MinMax", "Percentile", "Entropy"]
    assert not any(a["passed"] for a in q["attempts"])
    assert q["attempts"][0]["excluded_nodes"] == [] and len(q["attempts"][1]["excluded_nodes"]) >= 2
    assert q["chosen"] in {a["name"] for a in q["attempts"]}
    m = res.manifest
    assert m.int8_file and not m.int8_accepted and m.default_precision == "fp32"
    assert (res.bundle_dir / "model.int8.onnx").is_file()
    default = load_bundle(res.bundle_dir)
    assert isinstance(default, OnnxPredictor) and default.precision == "fp32"
    with caplog.at_level(logging.WARNING):
        forced = load_bundle(res.bundle_dir, precision="int8")
    assert forced.precision == "int8" and "failed the accuracy check" in caplog.text
    md = (res.bundle_dir / "report.md").read_text()
    assert "**rejected**" in md and "Entropy" in md


def test_int8_numerics_close_to_fp32(rejected):
    sf, res = rejected
    data = load_data(sf)
    fp32 = load_bundle(res.bundle_dir, backend="onnxruntime", precision="fp32", tta=False)
    int8 = load_bundle(res.bundle_dir, backend="onnxruntime", precision="int8", tta=False)
    diffs, agree = [], []
    for img in data.val.images:
        a, b = fp32.view_logits(img), int8.view_logits(img)
        diffs.append(np.abs(a - b).mean() / (a.std() + 1e-6))
        agree.append((a.argmax(1) == b.argmax(1)).mean())
    assert float(np.mean(diffs)) < 0.15, diffs
    assert float(np.mean(agree)) > 0.9, agree


def test_fallbacks_stop_at_the_first_attempt_within_the_limit(rejected, tmp_path):
    sf, res = rejected
    predictor = load_bundle(res.bundle_dir, backend="onnxruntime", precision="fp32", tta=False)
    data = load_data(sf)
    calib = [predictor.model_input(img) for img in data.train.images[:2]]
    fake = iter([0.40, 0.497, 0.1])  # drops 0.1 (fails), 0.003 (passes); the third is never tried
    attempts = [QuantAttempt("plain", "MinMax", False), QuantAttempt("ends", "MinMax", True),
                QuantAttempt("never", "Entropy", True)]
    out = quantize_with_fallbacks(res.bundle_dir / "model.onnx", tmp_path, calib, lambda p: next(fake),
                                  reference_miou=0.5, max_drop=0.005, attempts=attempts)
    assert out.accepted and out.chosen == "ends" and [a.name for a in out.attempts] == ["plain", "ends"]
    assert out.path is not None and out.path.is_file() and out.attempts[1].excluded_nodes
    # past the run's deadline only the first attempt runs; it ships as the closest, rejected
    late = quantize_with_fallbacks(res.bundle_dir / "model.onnx", tmp_path / "late", calib, lambda p: 0.40,
                                   reference_miou=0.5, max_drop=0.005, attempts=attempts, deadline=0.0)
    assert [a.name for a in late.attempts] == ["plain"] and late.skipped == ["ends", "never"]
    assert not late.accepted and late.chosen == "plain"


def test_report_contents(rejected):
    sf, res = rejected
    report = json.loads((res.bundle_dir / "report.json").read_text())
    assert report == json.loads(json.dumps(res.report))
    classes = list(sf.data.classes)
    assert report["holdout"]["source"] == "test/" and report["holdout"]["images"] == 2
    assert VARIANTS_VAL <= set(report["evaluation"]["val"])
    # the holdout: the default (ORT fp32 + TTA here), the same without TTA and the torch model
    assert list(report["holdout"]["scores"]) == ["torch_fp32", "ort_fp32", "ort_fp32_tta"]
    for ev in (report["evaluation"]["val"], report["holdout"]["scores"]):
        for v in ev.values():
            assert set(v["per_class_iou"]) == set(classes) and 0.0 <= v["miou"] <= 1.0
    tta = report["tta"]
    assert tta["evaluated"] and tta["kept"] and tta["gain"] is not None and tta["hflip"]
    assert set(tta["latency_cost_ms"]) == {"torch_fp32", "ort_fp32", "ort_int8"}
    assert report["default_predictor"] == {"backend": "onnxruntime", "precision": "fp32", "tta": True,
                                           "variant": "ORT fp32 + TTA"}
    lat = report["latency"]
    assert lat["threads"] == 1 and lat["cpu"] == cpu_model_name() and lat["runs"] == 5
    assert set(lat["results"]) == {"torch_fp32", "torch_fp32_tta", "ort_fp32", "ort_fp32_tta", "ort_int8",
                                   "ort_int8_tta"}
    assert all(r["median_ms"] > 0 and r["runs"] == 5 for r in lat["results"].values())
    assert set(lat["model_only"]) == {"torch_fp32", "ort_fp32", "ort_int8"}  # TTA has no single model call
    assert all(0 < lat["model_only"][k]["median_ms"] for k in lat["model_only"])
    assert report["model"]["params"] > 1e6 and report["model"]["input_size"] == [64, 64]
    s = report["search"]
    assert s["trials"] == {"complete": 1} and s["budget"]["n_trials"] == 3
    assert s["retrained_trial"]["number"] == 0 and s["retrained_trial"]["selected"] and s["study"] == "tiny"
    assert report["retrain"]["epochs"] == 1 and len(report["retrain"]["history"]) == 1
    assert report["onnx"]["dynamic"] and report["onnx"]["exporter"] == "dynamo"
    md = (res.bundle_dir / "report.md").read_text()
    for text in ("Per-class IoU", "ORT int8 + TTA", "model alone ms", f"threads {lat['threads']}", lat["cpu"], *classes,
                 "1 complete"):
        assert text in md, text
    # the report is also attached to the study for optuna-dashboard
    study = optuna.load_study(study_name=sf.name, storage=resolve_url(sf))
    assert study.user_attrs["final"]["default"] == "ORT fp32 + TTA"
    assert "![retrain curve; val mIoU against latency per variant](report.png)" in md
    assert (res.bundle_dir / "report.png").read_bytes()[:4] == b"\x89PNG" and report["figure"] == "report.png"
    assert sorted(m.filename for m in optuna.artifacts.get_all_artifact_meta(study)) == \
        ["report.json", "report.md", "report.png"]


def test_final_without_a_search_says_what_to_do(tiny_study, runs_root):
    sf = load_study_file(tiny_study(), runs_root=runs_root)
    with pytest.raises(AutoMLError, match="run `automl search` first"):
        run_final(sf)


def test_the_retrained_model_is_kept_for_reuse(rejected):
    sf, res = rejected
    cfg = TrialConfig.from_dict(yaml.safe_load((res.bundle_dir / "recipe.yaml").read_text()))
    kept = load_retrained(sf.run_dir, cfg, train_on_trainval=False)
    assert kept is not None and kept.reused and kept.history == res.report["retrain"]["history"]
    assert kept.device == "cpu" and isinstance(kept.model, torch.nn.Module)
    assert load_retrained(sf.run_dir, cfg.with_changes(epochs=5), train_on_trainval=False) is None
    assert load_retrained(sf.run_dir, cfg, train_on_trainval=True) is None


def test_extras_left_out_are_not_done_and_the_bundle_says_why(rejected, tmp_path):
    """What a short `automl run` leaves out (automl.final.extras) is not done: no INT8 file or
    score, the holdout scores only what ships; the bundle ships ONNX fp32 and its report says why.
    The same retrained model is reused, as `automl final --reuse-model` would to add them later."""
    from automl.bundle.layout import ONNX_INT8
    from automl.final.extras import Extras
    from automl.final.report import split_line

    sf, first = rejected
    why = (("int8", "INT8 quantization left out: priced at 40 s"),
           ("holdout_references", "the holdout's reference scores left out: priced at 20 s"))
    res = run_final(sf, out=tmp_path / "bundle", reuse_model=True,
                    extras=Extras(int8=False, holdout_references=False, why=why))
    r = res.report
    assert r["retrain"]["reused"] and r["default_predictor"]["variant"] == "ORT fp32 + TTA"
    assert not (tmp_path / "bundle" / ONNX_INT8).exists() and not res.manifest.int8_file
    assert "ort_int8" not in r["evaluation"]["val"] and r["int8"]["attempts"] == []
    assert list(r["holdout"]["scores"]) == ["ort_fp32_tta"]
    assert sorted(first.report["holdout"]["scores"]) == ["ort_fp32", "ort_fp32_tta", "torch_fp32"]
    assert r["int8"]["left_out"] == why[0][1] and {why[0][1], why[1][1]} <= set(r["notes"])
    assert r["extras"] == {"int8": False, "holdout_references": False, "left_out": dict(why)}
    md = (tmp_path / "bundle" / "report.md").read_text()
    assert f"Left out, the bundle ships fp32 only: {why[0][1]}" in md
    assert "scored once, after every decision, by ORT fp32 + TTA." in md  # what was scored, no more
    assert "by torch fp32, ORT fp32, ORT fp32 + TTA." in split_line(first.report)
    assert split_line(r).startswith("Trained on 16 train images; ")  # not on the selection split too
    assert "16 train images and the selection split;" in split_line({**r, "retrain": {"train_on_trainval": True}})
    assert load_bundle(tmp_path / "bundle").predict(np.zeros((40, 48, 3), np.uint8)).shape == (40, 48)
    # the note's command reuses the same retrained model (its epochs and split) and adds them
    hint = next(n for n in r["notes"] if "--reuse-model" in n)
    assert f"--epochs {r['retrain']['epochs']}`" in hint and "--trainval" not in hint
    again = run_final(sf, out=tmp_path / "again", epochs=r["retrain"]["epochs"], reuse_model=True)
    assert again.report["retrain"]["reused"] and again.manifest.int8_file
