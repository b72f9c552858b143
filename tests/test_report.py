"""`automl report` on a study of recorded trials (no training): the summary and readable plots."""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from PIL import Image

from automl.cli import main
from automl.config import load_study_file
from automl.study.runner import open_study
from automl.study.storage import resolve_url
from automl.trial_config import (
    AugmentSpec,
    DataSpec,
    LossSpec,
    ModelSpec,
    OptimizerSpec,
    ScheduleSpec,
    TrialConfig,
)

CLASSES = ("background", "disc", "box", "triangle", "ring")
DISTS = {"model": CategoricalDistribution(["Unet/resnet18", "FPN/resnet18"]),
         "adamw.lr": FloatDistribution(1e-4, 1e-2, log=True)}


def _config(arch: str, lr: float) -> dict:
    return TrialConfig(seed=0, epochs=3, batch_size=8, data=DataSpec(classes=CLASSES),
                       model=ModelSpec(arch=arch, encoder="resnet18"), optimizer=OptimizerSpec(name="adamw", lr=lr),
                       schedule=ScheduleSpec(name="cosine"), loss=LossSpec(dice=0.5),
                       augment=AugmentSpec(crop_height=64, crop_width=64)).to_dict()


def _record(study: optuna.Study, i: int, state: TrialState) -> None:
    arch, lr = ("Unet", "FPN")[i % 2], 1e-4 * 1.8 ** i
    curve = [0.1 + 0.05 * i + 0.1 * e for e in range(3 if state == TrialState.COMPLETE else 1)]
    attrs = {"config": _config(arch, lr), "params_m": 10 + i, "latency_ms": 15.0 + 2 * i, "latency_device": "cpu",
             "epochs_run": len(curve), "miou_history": curve, "wall_s": 20.0,
             "stop_reason": "completed" if state == TrialState.COMPLETE else f"pruned at epoch 1 (val mIoU {curve[0]})",
             "miou_per_class": {c: (None if c == "ring" else 0.5) for c in CLASSES}}
    study.add_trial(create_trial(
        state=state, value=curve[-1] if state == TrialState.COMPLETE else None,
        params={"model": f"{arch}/resnet18", "adamw.lr": lr}, distributions=DISTS, user_attrs=attrs,
        intermediate_values=dict(enumerate(curve, start=1))))


def test_report_writes_summary_and_plots(tiny_study, runs_root):
    path = tiny_study()
    sf = load_study_file(path, runs_root=runs_root)
    study = open_study(sf, resolve_url(sf))
    study.set_metric_names(["val mIoU"])
    for i in range(6):
        _record(study, i, TrialState.PRUNED if i == 2 else TrialState.COMPLETE)
    study.set_user_attr("audit_findings", ["class ring covers 0.4 % of train pixels"])

    assert main(["report", str(path), "--runs-root", str(runs_root)]) == 0
    out = runs_root / "tiny" / "report"
    md = (out / "report.md").read_text()
    for text in ("# Search summary: tiny", "Best so far: trial #5, val mIoU 0.5500", "Top 5 trials",
                 "PED-ANOVA over 5 complete trials:", "| model |", "Pruned: 1 after epoch 1",
                 "## Data audit", "class ring covers 0.4 % of train pixels"):
        assert text in md, text
    for name in ("history.png", "intermediate.png", "importances.png", "miou_vs_latency.png"):
        assert f"]({name})" in md, name
        with Image.open(out / name) as png:
            assert png.format == "PNG" and png.size == (800, 500), name
            # a drawn plot, not a blank canvas
            assert len(png.convert("L").getcolors(maxcolors=100_000) or ()) > 20, name


def test_report_without_complete_trials_says_why(tiny_study, runs_root):
    path = tiny_study()
    sf = load_study_file(path, runs_root=runs_root)
    study = open_study(sf, resolve_url(sf))
    _record(study, 0, TrialState.PRUNED)

    assert main(["report", str(path), "--runs-root", str(runs_root)]) == 0
    out = runs_root / "tiny" / "report"
    md = (out / "report.md").read_text()
    assert "No completed trial yet." in md and "Not drawn: no complete trial yet." in md
    assert (out / "intermediate.png").exists() and not (out / "history.png").exists()
