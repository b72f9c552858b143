"""`data.label_map`, `data.layout: flat` and the image/mask encodings real datasets arrive in:
each decodes to the arrays it should, each malformed case has its exact error, the search
refuses a class without train pixels, and the bundle turns predictions back into colours."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

from automl.cli import main
from automl.config import LabelMap, load_study_file
from automl.data.coverage import require_every_class
from automl.data.decode import scale_16bit
from automl.data.folder import load_dataset
from automl.data.label_map import decode_mask, to_original
from automl.data.split import check_same_split
from automl.errors import ConfigError, DataError
from automl.study import runner
from tests.conftest import TINY_SPACE, tiny_study_doc, write_yaml

H, W = 24, 32
BIN = ("background", "cell")


def _save(array_or_image, path: Path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    im.save(path, **kw)


def _pair(root: Path, split: str | None, stem: str, mask, image=None, *, ext: str = ".png") -> None:
    """root/split/{images,masks}/stem (``split`` None: the flat root/{images,masks})."""
    base = root if split is None else root / split
    shape = (mask.size[1], mask.size[0]) if isinstance(mask, Image.Image) else mask.shape[:2]
    image = np.full((*shape, 3), 90, np.uint8) if image is None else image
    _save(image, base / "images" / f"{stem}{ext}")
    _save(mask, base / "masks" / f"{stem}.png")


def _blocks(rng: np.random.Generator, values: list[int], h: int = H, w: int = W) -> np.ndarray:
    """A mask of 8x8 blocks, each one of ``values``; every value appears."""
    cells = rng.permutation(np.resize(np.array(values), (h // 8) * (w // 8))).reshape(h // 8, w // 8)
    return np.kron(cells, np.ones((8, 8), np.int64))


def _error(fn, *args, **kw) -> list[str]:
    with pytest.raises(DataError) as exc:
        fn(*args, **kw)
    return str(exc.value).splitlines()


# -- decoding -----------------------------------------------------------------------------------

def test_binary_0_255_masks_decode_to_classes_through_a_values_map(tmp_path):
    rng = np.random.default_rng(0)
    raw = {s: _blocks(rng, [0, 255]).astype(np.uint8) for s in ("a", "b")}
    for s, m in raw.items():
        _pair(tmp_path, "train", s, m)
    _pair(tmp_path, "val", "v", raw["a"])
    ds = load_dataset(tmp_path, BIN, 255, label_map=LabelMap(values={0: 0, 255: 1}))
    for s, m in zip(ds.train.stems, ds.train.masks):
        np.testing.assert_array_equal(m, (raw[s] == 255).astype(np.uint8))
    # without the map the same masks load, every foreground pixel read as void (the trap)
    plain = load_dataset(tmp_path, BIN, 255)
    assert set(np.unique(plain.train.masks[0])) == {0, 255}


def test_an_explicit_void_value_decodes_to_the_ignore_index():
    raw = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    mask, unknown = decode_mask(raw, LabelMap(values={0: 0, 1: 1}, void=[2]), 2, 255)
    np.testing.assert_array_equal(mask, [[0, 1, 255], [255, 1, 0]])
    assert unknown == {}


def test_16_bit_index_masks_decode_through_a_values_map(tmp_path):
    rng = np.random.default_rng(1)
    raw = _blocks(rng, [0, 500, 1000]).astype(np.uint16)
    _pair(tmp_path, "train", "a", raw)
    _pair(tmp_path, "val", "v", raw)
    with Image.open(tmp_path / "train" / "masks" / "a.png") as im:
        assert im.mode == "I;16"
    lm = LabelMap(values={"0": 0, "500": 1, "1000": 2})   # JSON writes the keys as strings
    ds = load_dataset(tmp_path, ("a", "b", "c"), 255, label_map=lm)
    np.testing.assert_array_equal(ds.train.masks[0], np.select([raw == 500, raw == 1000], [1, 2], 0))
    lines = _error(load_dataset, tmp_path, ("a", "b", "c"), 255)
    assert ("  train/masks/a.png: label values above 255 [500, 1000]; map a 16-bit mask's values to classes "
            "with data.label_map.values") in lines


def test_rgb_rgba_and_palette_masks_decode_through_a_colours_map(tmp_path):
    colours = {"#000000": 0, "#FF0000": 1, "#00ff00": 2}
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    rng = np.random.default_rng(2)
    idx = _blocks(rng, [0, 1, 2])
    rgb = palette[idx]
    _pair(tmp_path, "train", "rgb", rgb)
    _pair(tmp_path, "train", "rgba", np.dstack([rgb, np.full((H, W), 7, np.uint8)]))   # alpha dropped
    p = Image.frombytes("P", (W, H), idx.astype(np.uint8).tobytes())
    p.putpalette(palette.ravel().tolist())
    _pair(tmp_path, "train", "pal", p)                                                  # palette colours read
    _pair(tmp_path, "val", "v", rgb)
    ds = load_dataset(tmp_path, ("bg", "red", "green"), 255, label_map=LabelMap(colors=colours))
    assert ds.train.stems == ["pal", "rgb", "rgba"]
    for m in ds.train.masks:
        np.testing.assert_array_equal(m, idx)


def test_palette_mask_index_plane_with_a_values_map(tmp_path):
    idx = np.array([[0, 1], [2, 1]], np.uint8).repeat(8, 0).repeat(8, 1)
    p = Image.frombytes("P", (16, 16), idx.tobytes())
    p.putpalette([9, 9, 9, 200, 0, 0, 0, 200, 0])
    _pair(tmp_path, "train", "a", p)
    _pair(tmp_path, "val", "v", p)
    ds = load_dataset(tmp_path, ("x", "y"), 255, label_map=LabelMap(values={0: 0, 1: 1}, void=[2]))
    np.testing.assert_array_equal(ds.train.masks[0], np.where(idx == 2, 255, idx))


def test_grayscale_alpha_and_16_bit_images_become_8_bit_rgb(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    _pair(tmp_path, "train", "grey", mask, grey)                                         # L
    _pair(tmp_path, "train", "la", mask, np.dstack([grey, np.zeros_like(grey)]))         # LA: alpha dropped
    rgba = np.dstack([np.full((16, 16, 3), (10, 20, 30), np.uint8), np.zeros((16, 16), np.uint8)])
    _pair(tmp_path, "train", "rgba", mask, rgba)                                         # RGBA: alpha dropped
    sixteen = np.array([0, 128, 129, 257, 32767, 32768, 65406, 65535], np.uint16).repeat(32).reshape(16, 16)
    _pair(tmp_path, "train", "sixteen", mask, sixteen)                                   # I;16
    _pair(tmp_path, "val", "v", mask)
    ds = load_dataset(tmp_path, BIN, 255)
    img = dict(zip(ds.train.stems, ds.train.images))
    assert all(i.dtype == np.uint8 and i.shape == (16, 16, 3) for i in img.values())
    np.testing.assert_array_equal(img["grey"], np.dstack([grey] * 3))
    np.testing.assert_array_equal(img["la"], np.dstack([grey] * 3))
    np.testing.assert_array_equal(img["rgba"], rgba[..., :3])
    # round(v * 255 / 65535): 128 -> 0.498 -> 0, 129 -> 0.502 -> 1, 65406 -> 254.498 -> 254
    expected = np.array([0, 0, 1, 1, 127, 128, 254, 255], np.uint8)
    np.testing.assert_array_equal(img["sixteen"][::2, 0, 0], expected)
    np.testing.assert_array_equal(scale_16bit(sixteen.astype(np.int64))[::2, 0],
                                  np.round(sixteen[::2, 0].astype(np.float64) * 255 / 65535).astype(np.uint8))


def test_float_images_are_refused_by_name(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    _pair(tmp_path, "train", "ok", mask)
    _pair(tmp_path, "train", "float", mask, np.ones((16, 16), np.float32), ext=".tif")
    _pair(tmp_path, "val", "v", mask)
    assert _error(load_dataset, tmp_path, BIN, 255) == [
        "dataset " + tmp_path.name + "/ has 1 problem(s):",
        "  train/images/float.tif: 32-bit floating-point image (mode F); save it with 8- or 16-bit integer pixels"]


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return exif.tobytes()


def test_exif_rotated_photo_is_turned_upright_and_aligns_with_its_mask(tmp_path):
    rng = np.random.default_rng(3)
    upright = rng.integers(0, 256, (H, 16, 3), dtype=np.uint8)      # 24 high, 16 wide, as seen
    mask = np.zeros((H, 16), np.uint8)
    mask[:6, :4] = 1                                                  # top-left corner, as seen
    # sideways on disk (16 high, 24 wide); Orientation 6: a viewer turns the pixels 90° clockwise
    stored = np.ascontiguousarray(np.rot90(upright, 1))
    train = tmp_path / "train"
    for stem in ("photo", "both"):
        _save(stored, train / "images" / f"{stem}.png", exif=_exif(6))
    _save(mask, train / "masks" / "photo.png")                                 # drawn upright, no tag
    _save(np.ascontiguousarray(np.rot90(mask, 1)), train / "masks" / "both.png", exif=_exif(6))  # tagged too
    with Image.open(tmp_path / "train" / "images" / "photo.png") as im:
        assert im.size == (24, 16) and im.getexif()[ExifTags.Base.Orientation] == 6
    _pair(tmp_path, "val", "v", mask)
    ds = load_dataset(tmp_path, BIN, 255)
    for img, m in zip(ds.train.images, ds.train.masks):
        np.testing.assert_array_equal(img, upright)
        np.testing.assert_array_equal(m, mask)


CAMVID = {"sky": "#808080", "building": "#800000", "pole": "#c0c080", "road": "#804080", "pavement": "#3c28de",
          "tree": "#808000", "signsymbol": "#c08080", "fence": "#404080", "car": "#400080",
          "pedestrian": "#404000", "bicyclist": "#0080c0"}
CAMVID_VOID = "#000000"


def test_a_colour_coded_camvid_copy_decodes_to_the_index_copy(tmp_path):
    classes = tuple(CAMVID)
    palette = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in [*CAMVID.values(), CAMVID_VOID]],
                       np.uint8)
    rng = np.random.default_rng(4)
    for split, n in (("train", 3), ("val", 1)):
        for i in range(n):
            idx = _blocks(rng, list(range(12)), 32, 48).astype(np.uint8)   # 11 classes + void 11
            image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
            _pair(tmp_path / "index", split, f"{i:03d}", idx, image)
            _pair(tmp_path / "colour", split, f"{i:03d}", palette[idx], image)
    index = load_dataset(tmp_path / "index", classes, 11)
    colour = load_dataset(tmp_path / "colour", classes, 11, label_map=LabelMap(
        colors={c.upper(): i for i, c in enumerate(CAMVID.values())}, void=[CAMVID_VOID]))
    for split in ("train", "val"):
        for a, b in zip(index.splits[split].masks, colour.splits[split].masks, strict=True):
            np.testing.assert_array_equal(a, b)
        assert {int(v) for m in colour.splits[split].masks for v in np.unique(m)} <= set(range(12))
    assert {int(v) for m in colour.train.masks for v in np.unique(m)} == set(range(12))
    # and back: the decoded indices give the original colours, void (11) the void colour
    back = to_original(colour.train.masks[0], LabelMap(colors=dict(zip(CAMVID.values(), range(11))),
                                                       void=[CAMVID_VOID]))
    np.testing.assert_array_equal(back, palette[index.train.masks[0]])


def test_to_original_gives_raw_values_back():
    lm = LabelMap(values={0: 0, 255: 1, 254: 1}, void=[128])
    out = to_original(np.array([[0, 1, 255, 7]], np.uint8), lm)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 255, 128, 128]])   # a class's first value; void and unused: void
    wide = to_original(np.array([[0, 1]], np.uint8), LabelMap(values={0: 0, 1000: 1}))
    assert wide.dtype == np.uint16 and wide.tolist() == [[0, 1000]]
    np.testing.assert_array_equal(to_original(np.array([[1]], np.uint8), None), [[1]])


# -- errors -------------------------------------------------------------------------------------

COLOURS = LabelMap(colors={"#000000": 0, "#ff0000": 1})


def _colour_mask(extra: dict[str, int] | None = None) -> np.ndarray:
    """Black with a red block; ``extra``: colour -> number of pixels painted in row 0 onward."""
    m = np.zeros((H, W, 3), np.uint8)
    m[8:16, 8:16] = (255, 0, 0)
    start = 0
    for colour, n in (extra or {}).items():
        flat = m.reshape(-1, 3)
        flat[start:start + n] = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
        start += n
    return m


def test_unknown_colours_are_listed_with_pixel_counts_and_files(tmp_path):
    for stem in ("a", "b", "c", "d"):
        _pair(tmp_path, "train", stem, _colour_mask({"#ff00ff": 10}))
    _pair(tmp_path, "train", "e", _colour_mask())
    _pair(tmp_path, "val", "v", _colour_mask({"#123456": 5}))
    lines = _error(load_dataset, tmp_path, BIN, 255, label_map=COLOURS)
    assert lines == [
        f"dataset {tmp_path.name}/ has 2 problem(s):",
        "  data.label_map.colors does not map colour #ff00ff: 40 pixels in train/masks/a.png, train/masks/b.png, "
        "train/masks/c.png and 1 more; map it to a class, or list it in data.label_map.void",
        "  data.label_map.colors does not map colour #123456: 5 pixels in val/masks/v.png; map it to a class, or "
        "list it in data.label_map.void"]
    # listed as void, it decodes to the ignore index; nothing on disk changed
    before = (tmp_path / "train" / "masks" / "a.png").read_bytes()
    ds = load_dataset(tmp_path, BIN, 255, label_map=LabelMap(colors={"#000000": 0, "#ff0000": 1},
                                                              void=["#FF00FF", "#123456"]))
    assert int((ds.train.masks[0] == 255).sum()) == 10
    assert (tmp_path / "train" / "masks" / "a.png").read_bytes() == before


def test_unknown_raw_values_are_listed_over_the_dataset(tmp_path):
    m = np.zeros((16, 16), np.uint8)
    m[0, :3] = 255
    m[1, :2] = 77
    for stem in ("a", "b"):
        _pair(tmp_path, "train", stem, m)
    _pair(tmp_path, "val", "v", np.zeros((16, 16), np.uint8))
    lines = _error(load_dataset, tmp_path, BIN, 254, label_map=LabelMap(values={0: 0, 1: 1}))
    assert lines[1:] == [
        "  data.label_map.values does not map raw value 255: 6 pixels in train/masks/a.png, train/masks/b.png; "
        "map it to a class, or list it in data.label_map.void",
        "  data.label_map.values does not map raw value 77: 4 pixels in train/masks/a.png, train/masks/b.png; "
        "map it to a class, or list it in data.label_map.void"]


def test_mixed_mask_encodings_are_one_line_naming_the_minority(tmp_path):
    for stem in ("a", "b", "c"):
        _pair(tmp_path, "train", stem, _colour_mask())
    _pair(tmp_path, "train", "d", np.zeros((H, W), np.uint8))
    _pair(tmp_path, "val", "v", _colour_mask())
    assert _error(load_dataset, tmp_path, BIN, 255, label_map=COLOURS)[1:] == [
        "  mixed mask encodings: 4 RGB, 1 single-channel; the masks of one dataset share one encoding. "
        "The single-channel ones: train/masks/d.png"]


def test_rgb_masks_without_a_label_map_name_the_remedy(tmp_path):
    _pair(tmp_path, "train", "a", _colour_mask())
    _pair(tmp_path, "val", "v", _colour_mask())
    assert _error(load_dataset, tmp_path, BIN, 255)[1:] == [
        "  masks are RGB colour-coded (2 files, e.g. train/masks/a.png): map each colour to a class with "
        "data.label_map.colors"]
    grey = tmp_path / "grey"
    _pair(grey, "train", "a", np.zeros((H, W), np.uint8))
    _pair(grey, "val", "v", np.zeros((H, W), np.uint8))
    assert _error(load_dataset, grey, BIN, 255, label_map=COLOURS)[1:] == [
        "  masks are single-channel (2 files, e.g. train/masks/a.png) but data.label_map gives colors: map their "
        "raw values to classes with data.label_map.values"]


def test_masks_of_the_wrong_size_are_named(tmp_path):
    _pair(tmp_path, "train", "a", _colour_mask(), np.zeros((16, 16, 3), np.uint8))
    _pair(tmp_path, "val", "v", _colour_mask())
    assert _error(load_dataset, tmp_path, BIN, 255, label_map=COLOURS)[1:] == [
        "  train/a: image 16x16 and mask 32x24 differ in size"]


def _study(tmp_path: Path, root: Path | None = None, name: str = "bring", changes: dict | None = None,
           **data) -> Path:
    """A study on the folder ``root`` (default tmp_path/data); ``data``: its data section's keys,
    ``changes``: other dotted keys."""
    doc = tiny_study_doc(name, **(changes or {}))
    doc["data"] = {"root": str(root or tmp_path / "data"), "classes": list(BIN), **data}
    write_yaml(tmp_path / "space.yaml", TINY_SPACE)
    return write_yaml(tmp_path / f"{name}.yaml", doc)


@pytest.mark.parametrize(("data", "expected"), [
    ({"label_map": {"colors": {"#zz0000": 0, "#ff0000": 1}}},
     "data.label_map.colors: '#zz0000' is not a #rrggbb colour"),
    ({"label_map": {"values": {0: 0, 255: 2}}},
     "data.label_map.values: 255 → 2 is not a class index (0..1, data.classes); list void entries in "
     "data.label_map.void"),
    ({"label_map": {"values": {0: 0, 1: 0}}},
     "data.label_map.values: class 'cell' (1) has no raw value; every class in data.classes needs one"),
    ({"label_map": {"values": {0: 0, 255: 1}, "colors": {"#000000": 0}}},
     "data.label_map: give exactly one of `values` (single-channel masks: raw value → class index) or `colors` "
     "(RGB masks: \"#rrggbb\" → class index)"),
    ({"label_map": {"values": {0: 0, 255: 1}, "void": [255]}},
     "data.label_map.void: 255 is also mapped to class 1 in data.label_map.values; keep it in one of them"),
    ({"label_map": {"colors": {"#000000": 0, "#ff0000": 1}, "void": [128]}},
     "data.label_map.void: 128 is not a #rrggbb colour"),
    ({"layout": "flat"},
     "data.val_fraction: required with data.layout flat (root/images and root/masks are all train); e.g. 0.2 "
     "carves a seeded selection split from them"),
])
def test_label_map_and_layout_are_validated_naming_the_field(tmp_path, data, expected):
    with pytest.raises(ConfigError) as exc:
        load_study_file(_study(tmp_path, **data))
    assert expected in str(exc.value)


def test_yaml_keys_and_colours_are_normalised(tmp_path):
    path = tmp_path / "s.yaml"
    write_yaml(tmp_path / "space.yaml", TINY_SPACE)
    path.write_text(f"name: s\nsearch_space: space.yaml\nbudget: {{n_trials: 1}}\ndata:\n  root: {tmp_path}\n"
                    "  classes: [background, cell]\n  label_map:\n    colors: {'#FF0000': 1, '#000000': 0}\n"
                    "    void: ['#FFFFFF']\n")
    lm = load_study_file(path).data.label_map
    assert (lm.colors, lm.void) == ({"#ff0000": 1, "#000000": 0}, ["#ffffff"])
    path.write_text(path.read_text().replace("colors: {'#FF0000': 1, '#000000': 0}", "values: {0: 0, 255: 1}")
                    .replace("['#FFFFFF']", "[128]"))
    lm = load_study_file(path).data.label_map
    assert (lm.values, lm.void) == ({0: 0, 255: 1}, [128])
    assert LabelMap.model_validate_json(lm.model_dump_json()) == lm      # JSON keys are strings


# -- layouts ------------------------------------------------------------------------------------

def test_flat_layout_is_all_train_and_carves_its_val(tmp_path):
    rng = np.random.default_rng(5)
    for i in range(10):
        _pair(tmp_path / "data", None, f"{i:02d}", _blocks(rng, [0, 255]).astype(np.uint8))
    sf = load_study_file(_study(tmp_path, layout="flat", val_fraction=0.2, label_map={"values": {0: 0, 255: 1}}))
    ds = runner.load_data(sf)
    assert (len(ds.train), len(ds.val), ds.holdout) == (8, 2, None)
    assert set(ds.train.stems).isdisjoint(ds.val.stems)
    assert {int(v) for m in ds.train.masks for v in np.unique(m)} == {0, 1}
    (tmp_path / "data" / "masks" / "03.png").unlink()
    assert _error(runner.load_data, sf)[1:] == ["  images/03.png: no mask with this stem"]


def test_a_train_only_folder_loads_with_a_label_map(tmp_path):
    rng = np.random.default_rng(6)
    for i in range(6):
        _pair(tmp_path / "data", "train", f"{i:02d}", _blocks(rng, [0, 255]).astype(np.uint8))
    sf = load_study_file(_study(tmp_path, val_fraction=0.34, label_map={"values": {0: 0, 255: 1}}))
    ds = runner.load_data(sf)
    assert (len(ds.train), len(ds.val)) == (4, 2)
    assert ds.record["label_map"] == {"values": {"0": 0, "255": 1}, "colors": None, "void": []}
    # a study keeps its map: another one (or none) decodes other masks, and is refused
    other = runner.load_data(load_study_file(_study(tmp_path, name="other", val_fraction=0.34,
                                                    label_map={"values": {0: 0, 255: 1}, "void": [7]})))
    with pytest.raises(ConfigError, match=re.escape("study s was run on another data split (label_map {'values': "
                                                    "{'0': 0, '255': 1}, 'colors': None, 'void': []} → {'values': "
                                                    "{'0': 0, '255': 1}, 'colors': None, 'void': [7]})")):
        check_same_split(ds.record, other.record, "s")
    unmapped = {k: v for k, v in ds.record.items() if k != "label_map"}
    with pytest.raises(ConfigError, match=re.escape("(label_map {'values': {'0': 0, '255': 1}, 'colors': None, "
                                                    "'void': []} → None)")):
        check_same_split(ds.record, unmapped, "s")


# -- the search refuses a class it never sees ---------------------------------------------------

def test_search_refuses_to_start_when_a_class_has_no_train_pixels(tmp_path, runs_root, capsys, monkeypatch):
    rng = np.random.default_rng(7)
    for split, n in (("train", 6), ("val", 2)):
        for i in range(n):
            _pair(tmp_path / "data", split, f"{i:02d}", _blocks(rng, [0, 255]).astype(np.uint8))
    path = _study(tmp_path)
    with pytest.raises(DataError) as exc:
        runner.prepare(load_study_file(path, runs_root=runs_root))
    assert str(exc.value) == (
        "the search cannot learn a class it never sees:\n"
        "  class 'cell' (1) has no pixels in the 6 train images (no data.label_map: mask values are read as class "
        "indices)\n"
        "  every train pixel is background (0) or void (255): if 255 marks the foreground, not void, set "
        "data.label_map.values: {0: 0, 255: 1}\n"
        "Check data.label_map and data.classes (a 0/255 mask with ignore_index 255 reads every foreground pixel as "
        "void), or add train images that contain the class")
    monkeypatch.setenv("COLUMNS", "400")
    assert main(["search", str(path), "--runs-root", str(runs_root)]) == 2
    out = capsys.readouterr().out
    assert "class 'cell' (1) has no pixels in the 6 train images" in out
    assert not (runs_root / "bring" / "study.db").exists()              # refused before the study opened
    # after data.label_map, and after the carve: a class whose value no train mask holds
    three = _study(tmp_path, name="three", classes=["background", "cell", "nucleus"],
                   label_map={"values": {0: 0, 255: 1, 128: 2}}, val_fraction=0.25)
    with pytest.raises(DataError, match=re.escape(
            "  class 'nucleus' (2) has no pixels in the 4 train images after data.label_map and the "
            "data.val_fraction carve\nCheck")):
        runner.prepare(load_study_file(three, runs_root=runs_root))
    # mapped, the same folder starts
    prep = runner.prepare(load_study_file(_study(tmp_path, name="mapped", label_map={"values": {0: 0, 255: 1}}),
                                          runs_root=runs_root))
    assert prep.data_spec.label_map.values == {0: 0, 255: 1}
    require_every_class(prep.data, prep.sf.data)


# -- the bundle ---------------------------------------------------------------------------------

@pytest.fixture
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_bundle_records_the_map_and_turns_predictions_back_into_colours(tmp_path, one_torch_thread,
                                                                            monkeypatch):
    from automl.bundle import load_bundle
    from automl.final import run_final
    from automl.trial_config import (
        AugmentSpec,
        DataSpec,
        LossSpec,
        ModelSpec,
        OptimizerSpec,
        ScheduleSpec,
        TrialConfig,
    )
    from tests.test_final import study_with_trial

    colours = {"#000000": 0, "#ff0000": 1, "#00ff00": 2}
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [255, 255, 255]], np.uint8)
    rng = np.random.default_rng(8)
    for split, n in (("train", 6), ("val", 2)):
        for i in range(n):
            idx = _blocks(rng, [0, 1, 2, 3], 32, 32)
            image = (palette[idx] * 0.6 + rng.integers(0, 60, (32, 32, 3))).astype(np.uint8)
            _pair(tmp_path / "data", split, f"{i:02d}", palette[idx], image)
    path = _study(tmp_path, classes=["bg", "red", "green"], label_map={"colors": colours, "void": ["#ffffff"]},
                  changes={"final.epochs": 1, "final.int8.enabled": False, "final.latency_runs": 5,
                           "final.latency_threads": 1, "final.tta.hflip": False})
    sf = load_study_file(path, runs_root=tmp_path / "runs")
    cfg = TrialConfig(seed=0, epochs=1, batch_size=4,
                      data=DataSpec(classes=tuple(sf.data.classes), label_map=sf.data.label_map),
                      model=ModelSpec(arch="Unet", encoder="resnet18", encoder_depth=3),
                      optimizer=OptimizerSpec(name="adamw", lr=5e-3), schedule=ScheduleSpec(name="cosine"),
                      loss=LossSpec(), augment=AugmentSpec(crop_height=32, crop_width=32))
    study_with_trial(sf, cfg)
    bundle = run_final(sf, out=tmp_path / "bundle").bundle_dir

    recorded = json.loads((bundle / "bundle.json").read_text())["label_map"]
    assert recorded == {"values": None, "colors": colours, "void": ["#ffffff"]}
    predictor = load_bundle(bundle)
    image = np.asarray(Image.open(tmp_path / "data" / "val" / "images" / "00.png").convert("RGB"))
    mask = predictor.predict(image)
    original = predictor.to_original(mask)
    assert original.shape == (32, 32, 3) and original.dtype == np.uint8
    np.testing.assert_array_equal(original, palette[mask])
    # report.md says how, without the package: its snippet gives the same colours
    report = (bundle / "report.md").read_text()
    assert "## Original mask values" in report
    assert "Class index → colour (the first listed per class): 0 bg → #000000, 1 red → #ff0000, 2 green → " \
           "#00ff00. Void (#ffffff) was ignored in training." in report
    snippet = report.split("## Original mask values", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(bundle)
    scope = {"mask": mask}
    exec(snippet, scope)  # noqa: S102 - the report's own snippet, run as a user would
    np.testing.assert_array_equal(scope["original"], original)


def test_the_report_snippet_for_raw_values_gives_what_to_original_gives(tmp_path, monkeypatch):
    from automl.final.report import _original_values_section

    lm = LabelMap(values={0: 0, 255: 1, 254: 1, 1000: 2}, void=[128])
    (tmp_path / "bundle.json").write_text(json.dumps({"label_map": lm.model_dump(mode="json")}))
    lines = _original_values_section({"classes": ["bg", "cell", "deep"], "label_map": lm.model_dump(mode="json")})
    assert lines[2].endswith("Class index → raw value (the first listed per class): 0 bg → 0, 1 cell → 255, "
                             "2 deep → 1000. Void (128) was ignored in training.")
    snippet = "\n".join(lines).split("```python\n", 1)[1].split("```", 1)[0]
    mask = np.array([[0, 1, 2], [255, 3, 1]], np.uint8)
    monkeypatch.chdir(tmp_path)
    scope = {"mask": mask}
    exec(snippet, scope)  # noqa: S102 - the report's own snippet, run as a user would
    np.testing.assert_array_equal(scope["original"], to_original(mask, lm))
    np.testing.assert_array_equal(scope["original"], [[0, 255, 1000], [128, 128, 255]])
