"""A demo-like study end to end: search → `automl final` → bundle → `automl predict`, and the
README's plain-library loading code (tests/plain_loading_snippet.py) gives the same masks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from automl.bundle import (
    OnnxPredictor,
    TorchPredictor,
    TTASpec,
    load_bundle,
    read_manifest,
)
from automl.bundle.load import BundleError, load_preprocess
from automl.config import load_study_file
from automl.study.runner import load_data, prepare, run_search
from automl.trial.augment import eval_transform
from automl.trial_config import TrialConfig
from tests.conftest import TINY_SPACE, tiny_study_doc, write_yaml

SNIPPET = Path(__file__).with_name("plain_loading_snippet.py")
BUNDLE_FILES = ["model/config.json", "model/model.safetensors", "model/trial_config.json", "preprocess.yaml",
                "train_transform.yaml", "recipe.yaml", "model.onnx", "model.int8.onnx", "bundle.json",
                "report.md", "report.json"]
# One thread everywhere (see test_final.one_torch_thread); subprocesses get it from the environment.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "COLUMNS": "160"}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, OpenMP barriers with 2 threads stall
    several-fold whenever another process holds a core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def automl_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "automl", *args], capture_output=True, text=True, timeout=300,
                         cwd=cwd, env=ENV)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A one-trial search on tiny synthetic data, then `automl final` from the command line."""
    root = tmp_path_factory.mktemp("demo")
    write_yaml(root / "space.yaml", TINY_SPACE)
    path = write_yaml(root / "tiny.yaml", tiny_study_doc("tiny", **{
        "budget.n_trials": 1, "budget.trial_epochs": 1, "final.epochs": 3, "final.latency_runs": 5,
        "final.int8.calibration_images": 4, "final.latency_threads": 1}))
    sf = load_study_file(path, runs_root=root / "runs")
    study = run_search(prepare(sf))
    run = automl_cli("final", str(path), "--runs-root", str(root / "runs"), "--epochs", "2", cwd=root)
    return sf, study, root / "runs" / "tiny" / "bundle", run


@pytest.mark.filterwarnings("ignore:Argument\\(s\\) 'padding' are not valid")  # albumentations' own YAML
def test_cli_final_writes_every_bundle_file(demo):
    sf, study, bundle, run = demo
    missing = [f for f in BUNDLE_FILES if not (bundle / f).is_file()]
    assert not missing, missing
    umask = os.umask(0)
    os.umask(umask)
    for d in (bundle, bundle / "model"):  # not mkdtemp's owner-only 0700
        assert d.stat().st_mode & 0o777 == 0o777 & ~umask, oct(d.stat().st_mode)
    assert "ORT int8" in run.stdout and "val mIoU" in run.stdout and "automl predict" in run.stdout
    assert json.loads((bundle / "model/config.json").read_text())["encoder_weights"] is None
    best = TrialConfig.from_dict(study.best_trial.user_attrs["config"])
    recipe = TrialConfig.from_dict(yaml.safe_load((bundle / "recipe.yaml").read_text()))
    assert recipe == best.with_changes(epochs=2)  # the search's decisions, the final schedule
    assert A.to_dict(load_preprocess(bundle)) == A.to_dict(eval_transform(recipe.data))
    train_t = A.load(str(bundle / "train_transform.yaml"), data_format="yaml")
    assert isinstance(train_t, A.Compose) and len(train_t.transforms) >= 2
    m = read_manifest(bundle)
    assert m.study == "tiny" and m.classes == tuple(sf.data.classes) and m.onnx is not None
    assert m.default_backend == "onnxruntime"
    assert m.default_precision == ("int8" if m.int8_accepted else "fp32")


def test_bundle_round_trip(demo):
    sf, _, bundle, _ = demo
    data = load_data(sf)
    torch_p = load_bundle(bundle, backend="torch", tta=False)
    fp32 = load_bundle(bundle, backend="onnxruntime", precision="fp32", tta=False)
    int8 = load_bundle(bundle, backend="onnxruntime", precision="int8", tta=False)
    assert isinstance(torch_p, TorchPredictor) and isinstance(int8, OnnxPredictor) and int8.precision == "int8"
    for img in data.val.images:
        a, b, c = torch_p.predict(img), fp32.predict(img), int8.predict(img)
        assert a.shape == img.shape[:2] and a.dtype == np.uint8
        assert (a == b).mean() >= 0.999 and (b == c).mean() >= 0.9
    # any size: the ONNX graph has free H/W, the predictor pads to /32 and crops back
    odd = np.ascontiguousarray(data.val.images[0][:37, :51])
    forced = load_bundle(bundle, backend="onnxruntime", precision="fp32", tta=True)
    assert forced.tta == read_manifest(bundle).tta and forced.tta.enabled
    assert forced.predict(odd).shape == (37, 51)
    assert fp32.with_tta(TTASpec(hflip=True, scales=(0.5, 1.0))).predict(odd).shape == (37, 51)
    with pytest.raises(BundleError, match="needs backend='onnxruntime'"):
        load_bundle(bundle, backend="torch", precision="int8")
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        fp32.predict(odd.astype(np.float32))
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(bundle / "model")


def test_plain_library_code_gives_the_same_masks_as_automl_predict(demo, tmp_path):
    sf, _, bundle, _ = demo
    image = sorted((sf.data_root / "val" / "images").iterdir())[0]
    for backend, precision in (("torch", "fp32"), ("onnxruntime", "int8")):
        automl_cli("predict", str(bundle), str(image), "--out", str(tmp_path / backend), "--backend", backend,
                   "--precision", precision, "--no-tta", cwd=tmp_path)
    # Run the snippet file exactly as it is, then check that nothing imported automl.
    check = ("import runpy, sys; import numpy as np; "
             f"sys.argv = ['snippet', {str(bundle)!r}, {str(image)!r}]; "
             f"ns = runpy.run_path({str(SNIPPET)!r}); "
             "assert 'automl' not in sys.modules, 'the snippet imported automl'; "
             f"np.savez({str(tmp_path / 'plain.npz')!r}, torch=ns['mask_torch'], onnx=ns['mask_onnx'])")
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=ENV)
    assert run.returncode == 0, run.stdout + run.stderr
    plain = np.load(tmp_path / "plain.npz")
    for backend, key in (("torch", "torch"), ("onnxruntime", "onnx")):
        written = np.asarray(Image.open(tmp_path / backend / f"{image.stem}.png"))
        assert written.dtype == np.uint8 and written.shape == plain[key].shape
        np.testing.assert_array_equal(written, plain[key])
