"""Search big, ship small: the KD terms, the student's choice and its refusals, a distilled
student shipped in the bundle and loaded with plain SMP + ONNX Runtime, and a killed
`automl distill` that resumes keeping the teacher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import segmentation_models_pytorch as smp
import torch

from automl.bundle import load_bundle
from automl.config import KD_METHOD_NAMES, load_study_file
from automl.errors import ConfigError
from automl.final import run_final
from automl.final.student import choose_student
from automl.trial.distill import KD_METHODS, DistillCriterion, KDSpec
from tests.conftest import TINY_SPACE, tiny_study_doc, write_yaml
from tests.test_final import study_with_trial, tiny_config

STUDENT = "Unet/mobilenet_v2"  # smaller than the teacher's Unet/resnet18; random init, no download


def test_every_kd_method_the_study_file_names_is_registered():
    assert tuple(KD_METHODS) == KD_METHOD_NAMES


@pytest.mark.parametrize("method", list(KD_METHODS))
def test_kd_is_zero_when_student_and_teacher_agree_and_ignores_unlabelled_pixels(method):
    loss, t = KD_METHODS[method].loss, KD_METHODS[method].temperature
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 4, 6, 5, generator=g)
    valid = torch.ones(2, 6, 5, dtype=torch.bool)
    valid[:, :2] = False  # the top rows are ignore_index
    assert loss(teacher.clone(), teacher, valid, t).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.randn(2, 4, 6, 5, generator=g)
    base = loss(student, teacher, valid, t)
    assert base.item() > 1e-3
    # whatever either model says on unlabelled pixels, the term does not move
    s2, t2 = student.clone(), teacher.clone()
    s2[:, :, :2] = 50 * torch.randn(2, 4, 2, 5, generator=g)
    t2[:, :, :2] = -50 * torch.randn(2, 4, 2, 5, generator=g)
    assert loss(s2, t2, valid, t).item() == pytest.approx(base.item(), rel=1e-5)
    # and a student that agrees on the labelled pixels only costs nothing
    s3 = teacher.clone()
    s3[:, :, :2] = student[:, :, :2]
    assert loss(s3, teacher, valid, t).item() == pytest.approx(0.0, abs=1e-6)


def test_the_distillation_criterion_adds_the_weighted_term_and_trains_only_the_student(tmp_path):
    sf = load_study_file(write_yaml(tmp_path / "tiny.yaml", tiny_study_doc()), runs_root=tmp_path / "runs")
    cfg = tiny_config(sf).with_changes(model={"arch": "Unet", "encoder": "resnet18", "encoder_depth": 3})
    from automl.trial.losses import task_criterion
    from automl.trial.model import build_model

    torch.manual_seed(0)
    teacher, student = build_model(cfg.model, 5), build_model(cfg.model, 5)
    x = torch.randn(2, 3, 32, 32)
    y = torch.randint(0, 5, (2, 32, 32))
    y[:, :4] = 255
    spec = KDSpec.of("logits", weight=2.0)
    crit = DistillCriterion(cfg, teacher, 32, spec, torch.device("cpu"))
    out = student(x)
    total = crit(x, y, out, 1)
    task = task_criterion(cfg, torch.device("cpu"))(x, y, out, 1)
    with torch.no_grad():
        t_logits = teacher(x)
    kd = KD_METHODS["logits"].loss(out.float(), t_logits, y != 255, 1.0)
    assert total.item() == pytest.approx(task.item() + 2.0 * kd.item(), rel=1e-5)
    total.backward()
    assert all(p.grad is None for p in teacher.parameters()) and not teacher.training
    assert any(p.grad is not None for p in student.parameters())


@pytest.fixture
def searched(tmp_path):
    """A study with one completed trial (the teacher's recipe) and final.distill set."""
    write_yaml(tmp_path / "space.yaml", TINY_SPACE)

    def make(**changes):
        path = write_yaml(tmp_path / "tiny.yaml", tiny_study_doc("tiny", **{
            "data.synthetic.n_test": 4, "final.epochs": 2, "final.latency_runs": 5, "final.latency_threads": 1,
            "final.tta.hflip": False, "final.int8.calibration_images": 4,
            "final.distill": {"student": STUDENT}, **changes}))
        sf = load_study_file(path, runs_root=tmp_path / "runs")
        study = study_with_trial(sf, tiny_config(sf))
        return path, sf, study

    return make


@pytest.mark.parametrize("spec, needle", [
    ({"student": "Unet/nosuch_encoder"}, "unknown encoder 'nosuch_encoder'"),
    ({"student": "NoArch/resnet18"}, "unknown architecture 'NoArch'"),
    ({"student": "resnet18"}, "write ARCH/ENCODER"),
    ({"student": STUDENT, "method": "mse"}, "final.distill.method"),
])
def test_a_bad_student_spec_in_the_study_file_is_refused_naming_the_field(tmp_path, spec, needle):
    write_yaml(tmp_path / "space.yaml", TINY_SPACE)
    path = write_yaml(tmp_path / "tiny.yaml", tiny_study_doc("tiny", **{"final.distill": spec}))
    with pytest.raises(ConfigError) as err:
        load_study_file(path, runs_root=tmp_path / "runs")
    assert needle in str(err.value) and "final.distill" in str(err.value)


def test_a_student_that_cannot_be_trained_is_refused_before_any_training(searched):
    _, sf, study = searched()
    teacher = tiny_config(sf).with_changes(epochs=2)
    # DPT takes only timm encoders: the pair does not build
    with pytest.raises(ConfigError, match=r"final\.distill\.student: DPT/resnet18 cannot segment 64x64"):
        choose_student(sf.final.distill.model_copy(update={"student": "DPT/resnet18"}), study, teacher, (64, 64))
    with pytest.raises(ConfigError, match="the teacher's own model"):
        choose_student(sf.final.distill.model_copy(update={"student": "Unet/resnet18"}), study, teacher, (64, 64))
    from automl.config import DistillSection

    with pytest.raises(ConfigError, match=r"final\.distill\.student: no completed trial has a measured latency"):
        choose_student(DistillSection(student={"best_under": {"max_latency_ms": 1e-6}}), study, teacher, (64, 64))
    with pytest.raises(ConfigError, match="--student"):
        choose_student(sf.final.distill, study, teacher, (64, 64), override="Unet")
    chosen = choose_student(sf.final.distill, study, teacher, (64, 64))
    assert chosen.cfg.model.encoder == "mobilenet_v2" and chosen.trial is None
    assert chosen.cfg.optimizer == teacher.optimizer and chosen.cfg.epochs == 2  # the teacher's recipe
    faster = choose_student(sf.final.distill.model_copy(update={"lr": 0.0123}), study, teacher, (64, 64))
    assert faster.cfg.optimizer.lr == 0.0123 and faster.cfg.optimizer.name == teacher.optimizer.name
    assert "final.distill.lr" in faster.rule


def test_a_distilled_student_ships_in_the_bundle_and_loads_with_plain_smp_and_onnxruntime(searched, tmp_path):
    _, sf, _ = searched()
    res = run_final(sf, out=tmp_path / "bundle")
    bundle = res.bundle_dir
    d = json.loads((bundle / "report.json").read_text())["distill"]
    rows = {r["row"]: r for r in d["rows"]}
    assert {"teacher fp32", "student alone fp32", "student distilled fp32"} <= set(rows)
    assert all(0 <= r["val_miou"] <= 1 and r["latency_ms"] > 0 for r in rows.values())
    assert rows["student distilled fp32"]["holdout_miou"] is not None  # test/ is scored once per shipped model
    assert rows["student distilled fp32"]["params"] < rows["teacher fp32"]["params"]
    assert d["kd_helped"] == (d["kd_gain_val"] > 0) and d["default_model"] in ("teacher", "student")
    if not d["kd_helped"]:
        assert d["default_model"] == "teacher"
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["student"] == "student" and manifest["default_model"] == d["default_model"]
    md = (bundle / "report.md").read_text()
    assert "## Search big, ship small (distillation)" in md and ("KD helped" in md or "KD did not help" in md)
    # the student: a whole bundle, loaded exactly like the teacher
    student_dir = bundle / "student"
    plain = smp.from_pretrained(str(student_dir / "model")).eval()
    assert plain.encoder.__class__.__name__.lower().startswith("mobilenet")
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    ours = load_bundle(bundle, model="student", backend="torch")
    x = ours.model_input(image)
    with torch.no_grad():
        torch_logits = plain(torch.from_numpy(x))
    session = ort.InferenceSession(str(student_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"input": x})[0]
    assert np.abs(onnx_logits - torch_logits.numpy()).max() < 1e-3 * (1 + np.abs(onnx_logits).max())
    assert ours.predict(image).shape == (40, 56)
    assert (student_dir / "model.int8.onnx").is_file()
    assert load_bundle(bundle, model="teacher").predict(image).shape == (40, 56)
    snippet = Path(__file__).with_name("plain_loading_snippet.py")
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "img.png")
    out = subprocess.run([sys.executable, str(snippet), str(student_dir), str(tmp_path / "img.png")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_a_killed_distill_resumes_and_keeps_the_retrained_teacher(searched, tmp_path):
    path, sf, _ = searched(**{"final.epochs": 3, "final.int8.enabled": False})
    run_final(sf, distill=False)  # the teacher bundle, as `automl final` leaves it
    teacher = sf.run_dir / "final_model" / "model.safetensors"
    teacher_mtime = teacher.stat().st_mtime_ns
    bundle_teacher = (sf.run_dir / "bundle" / "model" / "model.safetensors").read_bytes()
    args = [sys.executable, "-m", "automl", "distill", str(path), "--runs-root", str(sf.runs_root)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # killed a moment into the student alone's training, once the distilled student is kept
    first = subprocess.run(args, capture_output=True, text=True, timeout=600,
                           env={**env, "AUTOML_FAULT_AT": "student_distilled", "AUTOML_FAULT_DELAY": "1.0"})
    assert first.returncode == -signal.SIGKILL, first.stdout[-3000:] + first.stderr[-3000:]
    distilled = sf.run_dir / "student_model" / "trial_config.json"
    assert distilled.is_file() and not (sf.run_dir / "bundle" / "student").exists()
    distilled_mtime = distilled.stat().st_mtime_ns
    second = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "reusing the student (distilled) retrain" in second.stdout + second.stderr
    assert distilled.stat().st_mtime_ns == distilled_mtime and teacher.stat().st_mtime_ns == teacher_mtime
    bundle = sf.run_dir / "bundle"
    assert (bundle / "model" / "model.safetensors").read_bytes() == bundle_teacher  # the teacher is the same
    assert json.loads((bundle / "bundle.json").read_text())["student"] == "student"
    assert (bundle / "student" / "model.onnx").is_file()


def test_a_run_budget_shares_the_final_between_teacher_and_students(tmp_path, caplog):
    """`automl run --budget` with final.distill: the teacher retrains in its part, the distilled
    student re-plans its epochs so that the student alone after it ends in the students' part, both
    at the same epochs, and the split is recorded on the study and shown by `automl status`."""
    import time

    import optuna

    from automl.overnight import run_overnight
    from automl.study.runner import prepare
    from automl.view.status import time_lines

    write_yaml(tmp_path / "space.yaml", TINY_SPACE)
    path = write_yaml(tmp_path / "tiny.yaml", tiny_study_doc("tiny", **{
        "budget.n_trials": 2, "budget.trial_epochs": 1, "final.int8.enabled": False,
        "final.tta.hflip": False, "final.latency_runs": 5, "final.latency_threads": 1,
        "final.distill": {"student": STUDENT, "share": 0.5}}))
    prep = prepare(load_study_file(path, runs_root=tmp_path / "runs"))
    budget = 90
    t0 = time.monotonic()
    with caplog.at_level("INFO", logger="automl.trial.length"):
        result = run_overnight(prep, budget)
    wall = time.monotonic() - t0
    attrs = optuna.load_study(study_name="tiny", storage=prep.storage_url).user_attrs
    assert attrs["run_state"] == "done" and attrs["run_distill_share"] == 0.5 and "run_distill_error" not in attrs
    assert attrs["run_student_plan_s"] > 0
    table = result.report["distill"]
    # both students trained the epochs the budget gave the distilled one, not the teacher's
    alone = json.loads((prep.sf.run_dir / "student_alone_model" / "trial_config.json").read_text())
    distilled = json.loads((prep.sf.run_dir / "student_model" / "trial_config.json").read_text())
    assert alone["config"]["epochs"] == distilled["config"]["epochs"] == table["epochs"] == attrs["run_student_epochs"]
    assert "s with the runs after it) at epoch" in caplog.text  # priced with the student alone's run
    assert (result.bundle_dir / "student" / "model" / "model.safetensors").is_file()
    assert wall < budget * 1.5, wall  # start-up and a loaded 2-core box: the budget, not the epochs, bounds it
    students = dict(time_lines(attrs))["students"]
    assert "final.distill.share 0.50" in students and f"{table['epochs']} epochs each" in students
