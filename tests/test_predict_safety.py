"""`automl predict` and ``load_bundle`` on bad input: an --out that would overwrite images or earlier
masks, unreadable images among good ones, damaged or incomplete bundle files.

The bundle here is an untrained torch-only one written by ``write_bundle`` in a few seconds:
none of these checks needs a trained model or an ONNX export (garbage stands in for the ONNX files).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from automl.bundle import BundleError, Manifest, load_bundle, read_manifest, write_bundle
from automl.bundle.layout import MANIFEST, OnnxInfo
from automl.cli import build_parser
from automl.errors import AutoMLError
from automl.trial.model import build_model
from automl.trial_config import AugmentSpec, DataSpec, LossSpec, ModelSpec, OptimizerSpec, ScheduleSpec, TrialConfig
from tests.test_bundle import ENV, one_torch_thread  # noqa: F401 - one_torch_thread: autouse fixture

CLASSES = ("background", "disc", "box")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A complete, loadable bundle of an untrained Linknet (torch only)."""
    cfg = TrialConfig(seed=0, epochs=1, batch_size=2, data=DataSpec(classes=CLASSES),
                      model=ModelSpec(arch="Linknet", encoder="resnet18", encoder_depth=3),
                      optimizer=OptimizerSpec(name="adamw", lr=1e-3), schedule=ScheduleSpec(name="constant"),
                      loss=LossSpec(), augment=AugmentSpec(crop_height=32, crop_width=32))
    torch.manual_seed(0)
    manifest = Manifest(study="tiny", classes=CLASSES, ignore_index=255, pad_divisor=32, input_size=(32, 32))
    out = tmp_path_factory.mktemp("bundle") / "bundle"
    write_bundle(out, model=build_model(cfg.model, len(CLASSES)), cfg=cfg, manifest=manifest, report={},
                 render_md=lambda report: "")
    return out


def write_images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = [folder / f"{i:05d}.png" for i in range(n)]
    for p in paths:
        Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)).save(p)
    return paths


def predict(*argv: str) -> tuple[int, str]:
    """`automl predict ARGV` in this process: (exit code, what it printed); AutoMLError propagates."""
    args = build_parser().parse_args(["predict", *map(str, argv)])
    text = io.StringIO()
    return args.func(args, Console(file=text, width=300)), text.getvalue()


# --- --out must never put masks over inputs or earlier files -------------------------------------

def test_out_on_the_inputs_is_refused_before_the_model_is_loaded(bundle, tmp_path):
    images = write_images(tmp_path / "images", 3)
    before = [p.read_bytes() for p in images]
    with pytest.raises(AutoMLError, match=r"would overwrite the input image\(s\) 00000.png, 00001.png, 00002.png;"):
        predict(bundle, images[0].parent, "--out", images[0].parent)
    assert [p.read_bytes() for p in images] == before
    (tmp_path / "link").symlink_to(tmp_path / "images")
    for inputs, out in (([images[0].parent], tmp_path / "link"),         # other spellings of the folder,
                        ([images[1]], tmp_path / "images/../images"),    # a file given alone,
                        ([images[0].parent], tmp_path / "link/.")):      # and even with --overwrite
        with pytest.raises(AutoMLError, match=r"would overwrite the input image.*0000[01].png"):
            predict(bundle, *inputs, "--out", out, "--overwrite")
    # no bundle at all: the clash is found first, so nothing was loaded or computed
    with pytest.raises(AutoMLError, match="would overwrite the input image"):
        predict(tmp_path / "no-bundle", images[0].parent, "--out", images[0].parent)
    assert [p.read_bytes() for p in images] == before
    # masks beside the inputs without overwriting any (a.jpg → a.png) would still mix them up
    Image.open(images[2]).save(tmp_path / "images" / "photo.jpg")
    with pytest.raises(AutoMLError, match="holds the input image.*photo.jpg"):
        predict(bundle, tmp_path / "images" / "photo.jpg", "--out", tmp_path / "images")
    assert not (tmp_path / "images" / "photo.png").exists()


def test_existing_masks_are_kept_unless_overwrite(bundle, tmp_path):
    images = write_images(tmp_path / "images", 7)
    out = tmp_path / "masks"
    out.mkdir()
    (out / "notes.txt").write_text("not a mask: no reason to refuse")
    for p in images[:6]:
        (out / p.name).write_bytes(b"earlier mask")
    for where in (bundle, tmp_path / "no-bundle"):  # refused before the bundle is even read
        with pytest.raises(AutoMLError, match=r"already holds 6 .*00000.png, .* \(6 in all\).*--overwrite"):
            predict(where, tmp_path / "images", "--out", out)
    assert all((out / p.name).read_bytes() == b"earlier mask" for p in images[:6])
    assert not (out / images[6].name).exists()
    rc, text = predict(bundle, tmp_path / "images", "--out", out, "--overwrite")
    assert rc == 0 and "7 mask(s) written" in text
    for p in images:
        mask = np.asarray(Image.open(out / p.name))
        assert mask.shape == (24, 40) and mask.max() < len(CLASSES)
    assert (out / "notes.txt").read_text() == "not a mask: no reason to refuse"


# --- unreadable images are skipped, named, and counted ----------------------------------------------

def test_unreadable_images_are_skipped_and_the_rest_predicted(bundle, tmp_path):
    images = write_images(tmp_path / "images", 10)
    good = images[2].read_bytes()
    images[2].write_bytes(good[: len(good) // 2])
    images[5].write_bytes(b"")
    images[7].write_bytes(b"a text file named .png")
    rc, text = predict(bundle, tmp_path / "images", "--out", tmp_path / "masks")
    assert rc == 1
    lines = text.splitlines()
    assert f"skipped {images[2]}: truncated file" in lines
    assert f"skipped {images[5]}: empty file" in lines
    assert any(line.startswith(f"skipped {images[7]}: not an image") for line in lines)
    assert f"3 of 10 images could not be read; 7 mask(s) written to {tmp_path / 'masks'}" in lines[-1]
    written = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert written == [p.name for i, p in enumerate(images) if i not in (2, 5, 7)]


# --- damaged or incomplete bundles: one BundleError naming the file ---------------------------------

def damaged_copy(bundle: Path, tmp_path: Path, file: str, content: bytes | None) -> Path:
    """A copy of ``bundle`` (hard links: cheap) with ``file`` replaced by ``content``, or removed."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy, copy_function=os.link)
    (copy / file).unlink(missing_ok=True)  # unlink first: writing through the link would damage the original
    if content is not None:
        (copy / file).write_bytes(content)
    return copy


CASES = {  # id: (file, content or None to remove it, load_bundle options)
    "onnx-garbage": ("model.onnx", b"\x08garbage", dict(backend="onnxruntime", precision="fp32")),
    "int8-garbage": ("model.int8.onnx", b"\x08garbage", dict(backend="onnxruntime", precision="int8")),
    "safetensors-garbage": ("model/model.safetensors", b"garbage", {}),
    "safetensors-missing": ("model/model.safetensors", None, {}),
    "config-missing": ("model/config.json", None, {}),  # else taken for a Hub repo id
    "trial-config-truncated": ("model/trial_config.json", b'{"config": {', {}),
    "manifest-truncated": (MANIFEST, b'{\n  "format_version": 1,\n  "study": "ti', {}),
    "manifest-binary": (MANIFEST, b"\xff\xfe\x00", {}),
    "preprocess-garbage": ("preprocess.yaml", b"{{{: [", {}),
    "preprocess-not-a-transform": ("preprocess.yaml", b"hello: world\n", {}),
    "preprocess-missing": ("preprocess.yaml", None, {}),
}


@pytest.mark.parametrize("case", CASES)
def test_a_damaged_bundle_file_is_named(bundle, tmp_path, case):
    file, content, options = CASES[case]
    damaged = damaged_copy(bundle, tmp_path, file, content)
    with pytest.raises(BundleError) as err:
        load_bundle(damaged, **options)
    message = str(err.value)
    assert str(damaged / file) in message and "re-run `automl final" in message and "\n" not in message
    assert ("is missing" if content is None else "is damaged") in message


def test_a_shipped_onnx_model_that_went_missing_is_a_damaged_bundle(bundle, tmp_path):
    copy = damaged_copy(bundle, tmp_path, MANIFEST, None)
    shipped = read_manifest(bundle).model_copy(update=dict(
        onnx=OnnxInfo(exporter="legacy", dynamic=True, input_size=(32, 32)), int8_file=True))
    (copy / MANIFEST).write_text(shipped.model_dump_json())
    for precision, name in (("fp32", "model.onnx"), ("int8", "model.int8.onnx")):
        with pytest.raises(BundleError, match=f"{name} is missing: the bundle is incomplete; re-run `automl final"):
            load_bundle(copy, backend="onnxruntime", precision=precision)
    assert load_bundle(bundle).predict(np.zeros((20, 30, 3), np.uint8)).shape == (20, 30)  # the original is whole


def test_cli_prints_one_line_for_a_damaged_bundle(bundle, tmp_path):
    damaged = damaged_copy(bundle, tmp_path, MANIFEST, read_manifest(bundle).model_dump_json()[:40].encode())
    image = write_images(tmp_path / "images", 1)[0]
    run = subprocess.run([sys.executable, "-m", "automl", "predict", str(damaged), str(image), "--out",
                          str(tmp_path / "masks")], capture_output=True, text=True, timeout=120,
                         env={**ENV, "COLUMNS": "1000"})  # rich wraps the error at the terminal width
    output = (run.stdout + run.stderr).strip()
    assert run.returncode == 2, output
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    assert f"{damaged / MANIFEST} is damaged" in output and "automl final" in output
    assert not (tmp_path / "masks").exists()
