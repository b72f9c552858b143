"""Dataset folder validation (every offending file in one error) and the synthetic generator."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from automl.data.folder import load_dataset, padded_size
from automl.data.synthetic import CLASSES, generate
from automl.errors import DataError


def _pair(root, split, stem, size=(24, 32), label=1, mask_ext=".png"):
    (root / split / "images").mkdir(parents=True, exist_ok=True)
    (root / split / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(root / split / "images" / f"{stem}.png")
    Image.fromarray(np.full(size, label, np.uint8)).save(root / split / "masks" / f"{stem}{mask_ext}")


def test_valid_folder_decodes_once_into_memory(tmp_path):
    for i in range(3):
        _pair(tmp_path, "train", f"a{i}")
    _pair(tmp_path, "val", "v0", size=(20, 30))
    ds = load_dataset(tmp_path, ("bg", "fg"), 255)
    assert len(ds.train) == 3 and len(ds.val) == 1 and ds.test is None
    assert ds.train.images[0].dtype == np.uint8 and ds.train.images[0].shape == (24, 32, 3)
    assert ds.max_size() == (24, 32) and padded_size(ds.max_size(), 32) == (32, 32)


def test_every_problem_is_listed_in_one_error(tmp_path):
    _pair(tmp_path, "train", "good")
    _pair(tmp_path, "train", "badlabel", label=7)                 # label outside classes and ignore
    _pair(tmp_path, "train", "ignored", label=255)               # ignore index is fine
    (tmp_path / "train" / "images" / "orphan.png").write_bytes(b"")   # image without mask
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "train" / "masks" / "lonely.png")
    _pair(tmp_path, "train", "sizes")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "train" / "masks" / "sizes.png")
    (tmp_path / "train" / "images" / "broken.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(tmp_path / "train" / "masks" / "broken.png")
    _pair(tmp_path, "train", "rgbmask")
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / "train" / "masks" / "rgbmask.png")
    # no val split at all
    with pytest.raises(DataError) as exc:
        load_dataset(tmp_path, ("bg", "fg"), 255)
    msg = str(exc.value)
    assert "val/: missing split folder" in msg
    assert "orphan.png: no mask" in msg and "lonely.png: no image" in msg
    # The folder-level problems stop the scan; fix them and the per-file problems all appear.
    (tmp_path / "train" / "images" / "orphan.png").unlink()
    (tmp_path / "train" / "masks" / "lonely.png").unlink()
    _pair(tmp_path, "val", "v0")
    with pytest.raises(DataError) as exc:
        load_dataset(tmp_path, ("bg", "fg"), 255)
    msg = str(exc.value)
    assert "badlabel.png: labels [7]" in msg
    assert "sizes: image 32x24 and mask 10x10 differ" in msg
    assert "broken.png: unreadable" in msg
    # one RGB mask among single-channel ones: a line for the dataset, naming the odd one out
    assert ("mixed mask encodings: 1 RGB, 6 single-channel; the masks of one dataset share one encoding. "
            "The RGB ones: train/masks/rgbmask.png") in msg
    assert "ignored" not in msg and "good" not in msg
    assert str(tmp_path.parent) not in msg  # paths are reported relative to the data root


def test_jpeg_masks_are_rejected(tmp_path):
    _pair(tmp_path, "train", "a")
    _pair(tmp_path, "val", "b")
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(tmp_path / "val" / "masks" / "c.jpg")
    with pytest.raises(DataError, match="JPEG masks are lossy"):
        load_dataset(tmp_path, ("bg", "fg"), 255)


def test_synthetic_data_is_deterministic_and_centre_biased(tmp_path):
    a = generate(tmp_path / "a", n_train=30, n_val=4, height=48, width=64, seed=3)
    b = generate(tmp_path / "b", n_train=30, n_val=4, height=48, width=64, seed=3)
    da, db = (load_dataset(p, CLASSES, 255) for p in (a, b))
    for x, y in zip(da.train.masks, db.train.masks):
        np.testing.assert_array_equal(x, y)
    fg = np.stack(da.train.masks) > 0
    labels = np.unique(np.stack(da.train.masks))
    assert set(labels) <= set(range(len(CLASSES))) and len(labels) >= 4
    centre = fg[:, 12:36, 16:48].mean()
    border = np.concatenate([fg[:, :6].ravel(), fg[:, -6:].ravel()]).mean()
    assert centre > 2 * border


def test_generation_is_skipped_when_complete(tmp_path):
    root = generate(tmp_path, n_train=4, n_val=2, height=32, width=32)
    stamp = (root / "train" / "images" / "00000.png").stat().st_mtime_ns
    generate(tmp_path, n_train=4, n_val=2, height=32, width=32)
    assert (root / "train" / "images" / "00000.png").stat().st_mtime_ns == stamp
