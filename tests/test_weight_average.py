"""The final retrain's weight average (EMA): its decay follows the run's length, it is kept only
when it scores better on the selection split, and a kept average exports, quantizes and loads
exactly like trained weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch
from torch import nn

from automl.bundle import load_bundle
from automl.config import load_study_file
from automl.final import pipeline, run_final
from automl.trial.ema import WeightAverage
from tests.conftest import TINY_SPACE, tiny_study_doc, write_yaml
from tests.test_final import study_with_trial, tiny_config


def test_the_average_spans_a_share_of_the_steps_and_follows_the_weights():
    avg = WeightAverage(horizon=0.1)
    assert avg.decay_for(200) == pytest.approx(0.95) and avg.decay_for(5) == 0.0  # under 1 step: no averaging
    model = nn.Linear(1, 1, bias=False)
    expected = None
    for step in range(1, 41):
        with torch.no_grad():
            model.weight.fill_(float(step))
        avg(model, step, 200)
        expected = float(step) if expected is None else 0.95 * expected + 0.05 * step
    assert avg.decay == pytest.approx(0.95)
    assert avg.model.weight.item() == pytest.approx(expected) and avg.model.weight.item() < 40 - 10


def test_a_kept_average_is_what_the_bundle_ships_and_loads(tmp_path, monkeypatch):
    write_yaml(tmp_path / "space.yaml", TINY_SPACE)
    path = write_yaml(tmp_path / "tiny.yaml", tiny_study_doc("tiny", **{
        "final.epochs": 2, "final.latency_runs": 5, "final.latency_threads": 1, "final.tta.hflip": False,
        "final.int8.enabled": False,  # ONNX fp32 is the export that must load like the plain weights
        "final.ema": {"enabled": True, "horizon": 0.5}}))
    sf = load_study_file(path, runs_root=tmp_path / "runs")
    study_with_trial(sf, tiny_config(sf))
    seen = {}
    real = pipeline._average_or_trained

    def always_kept(trained, average, val, cfg, min_gain):
        seen["trained"] = {k: v.clone() for k, v in trained.state_dict().items()}
        model, decision = real(trained, average, val, cfg, -1.0)  # any score keeps it
        seen["average"] = {k: v.clone() for k, v in model.state_dict().items()}
        return model, decision

    monkeypatch.setattr(pipeline, "_average_or_trained", always_kept)
    res = run_final(sf, out=tmp_path / "bundle")

    wa = res.report["retrain"]["weight_average"]
    assert wa["kept"] is True and wa["horizon"] == 0.5 and 0 <= wa["val_miou_average"] <= 1
    assert any(not torch.equal(seen["trained"][k], seen["average"][k]) for k in seen["average"])
    # the bundle's weights are the average, through SMP's own loader and through ours
    plain = smp.from_pretrained(str(res.bundle_dir / "model")).eval()
    assert all(torch.equal(v, seen["average"][k]) for k, v in plain.state_dict().items())
    bundle = load_bundle(res.bundle_dir, backend="torch")
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    onnx = load_bundle(res.bundle_dir, backend="onnxruntime", precision="fp32")
    assert (bundle.predict(image) == onnx.predict(image)).mean() > 0.99
    assert "## Weight average (EMA)" in (res.bundle_dir / "report.md").read_text()
    assert json.loads((res.bundle_dir / "report.json").read_text())["retrain"]["weight_average"] == wa
