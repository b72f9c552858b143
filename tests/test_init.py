"""`automl init`: a study planned from a folder, in each layout and mask encoding users have.

Each case builds a tiny synthetic folder (32x48 px, a handful of images), runs `automl init`,
checks what the study file says (classes, label map, split, reasons), and runs `automl search`
on it for one trial of one epoch (the derived space narrowed to one model pair, to keep the
suite fast; the crop, batch size and the rest are init's). Malformed folders get their exact
error text; a study asking for ImageNet weights this machine cannot get stops before any trial.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from PIL import ExifTags, Image

from automl.cli import main
from automl.config import load_study_file
from automl.data.fingerprint import Fingerprint, RawValue, Sizes, fingerprint
from automl.data.palette import find_palette
from automl.errors import ConfigError, DataError
from automl.plan.encoding import parse_void, read_encoding, voc_colour
from automl.plan.machine import Machine
from automl.plan.render import render_study
from automl.plan.study import plan_study
from automl.trial.model import check_encoder_weights, imagenet_unavailable

H, W = 32, 48
RED, GREEN, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 0)


# --- tiny folders ---------------------------------------------------------------------------

def _rects(i: int, values: list) -> np.ndarray:
    """A mask holding every one of ``values`` (ints, or RGB triples), in bands shifted by ``i``."""
    rgb = isinstance(values[0], tuple)
    m = np.zeros((H, W, 3) if rgb else (H, W), np.uint8 if rgb or max(values) <= 255 else np.uint16)
    m[...] = values[0]
    for k, v in enumerate(values[1:], 1):
        m[4 * k: 4 * k + 10, (3 * i + 8 * k) % (W - 10): (3 * i + 8 * k) % (W - 10) + 10] = v
    return m


def _folder(root: Path, splits: dict[str, int], values: list, *, image_mode: str = "RGB") -> Path:
    """``splits``: split name → images (``""``: the flat root/{images,masks})."""
    rng = np.random.default_rng(0)
    for split, n in splits.items():
        base = root / split if split else root
        (base / "images").mkdir(parents=True, exist_ok=True)
        (base / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = Image.fromarray((rng.random((H, W, 3)) * 255).astype(np.uint8)).convert(image_mode)
            img.save(base / "images" / f"{split or 'img'}{i}.png")
            Image.fromarray(_rects(i, values)).save(base / "masks" / f"{split or 'img'}{i}.png")
    return root


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working directory for studies/ and search_spaces/, wide output, an empty HF cache and
    no network: init and the start-up check see exactly what the test sets up."""
    from huggingface_hub import constants

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")
    (tmp_path / "hf").mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path


def _flat(text: str) -> str:
    """Printed or commented text with its line breaks (and the comment marks they bring) undone."""
    return re.sub(r"\s+", " ", re.sub(r"\n *# ", " ", text))


def _init(capsys, data: Path, *args: str) -> tuple[int, str]:
    code = main(["init", str(data), *args])
    return code, capsys.readouterr().out


def _study(work: Path, name: str) -> dict:
    return yaml.safe_load((work / "studies" / f"{name}.yaml").read_text())


def _narrow(work: Path, name: str) -> None:
    """One model pair in the derived space: the search's cost, not init's plan, is what shrinks."""
    path = work / "search_spaces" / f"{name}.yaml"
    space = yaml.safe_load(path.read_text())
    space["model"].update(architectures=["Unet"], encoders=["resnet18"], encoder_depth=3, aux_head=False)
    space["baseline"].update(model="Unet/resnet18", aux_head=False)
    path.write_text(yaml.safe_dump(space, sort_keys=False))


def _search_one_trial(work: Path, name: str) -> None:
    _narrow(work, name)
    runs = work / "runs"
    assert main(["search", f"studies/{name}.yaml", "--n-trials", "1", "--epochs", "1", "--runs-root", str(runs)]) == 0
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{runs}/{name}/study.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]


# --- each layout and encoding: init, then one short search ----------------------------------

def test_ours_with_val_carves_selection_and_keeps_val_as_holdout(work, capsys):
    data = _folder(work / "ours", {"train": 6, "val": 3}, [0, 1, 2, 255])
    code, out = _init(capsys, data, "--device", "cpu")
    assert code == 0
    doc = _study(work, "ours")
    assert doc["data"] == {"root": "../ours", "classes": ["class_0", "class_1", "class_2"], "ignore_index": 255,
                           "val_fraction": 0.2, "split_seed": 0}
    text = _flat((work / "studies" / "ours.yaml").read_text())
    assert "8-bit values 0..k-1 are class indices; 255 is read as void" in text
    assert "val/ (3 images) is kept as the untouched holdout" in text
    assert doc["search_space"] == "../search_spaces/ours.yaml" and doc["device"] == "cpu"
    assert out.rstrip().endswith("next: automl run studies/ours.yaml --budget 1h")
    assert "wrote studies/ours.yaml, search_spaces/ours.yaml" in out
    _search_one_trial(work, "ours")


def test_flat_binary_0_255_with_grayscale_images(work, capsys):
    data = _folder(work / "cells", {"": 8}, [0, 255], image_mode="L")
    code, out = _init(capsys, data, "--device", "cpu")
    assert code == 0
    doc = _study(work, "cells")
    assert doc["data"]["layout"] == "flat"
    assert doc["data"]["classes"] == ["background", "foreground"]
    assert doc["data"]["label_map"] == {"values": {0: 0, 255: 1}}
    assert "0 is the background and 255 the foreground (not void)" in _flat(out)
    assert "There is NO untouched holdout" in _flat(out)
    assert "images: median 48x32 (smallest 48x32, largest 48x32); modes grey 8" in out
    _search_one_trial(work, "cells")


def test_train_only_0_1_with_an_explicit_void_value(work, capsys):
    data = _folder(work / "tonly", {"train": 6}, [0, 1, 200])
    code, out = _init(capsys, data, "--device", "cpu", "--void", "200")
    assert code == 0
    d = _study(work, "tonly")["data"]
    # plain class indices: the void value becomes the ignore index, no label map needed
    assert (d["classes"], d["ignore_index"], "label_map" in d) == (["class_0", "class_1"], 200, False)
    assert "--void: 200 read as void" in _flat(out) and "the void value 200 is data.ignore_index" in _flat(out)
    assert d["val_fraction"] == 0.2 and "2 is the floor for a small set (data.min_val_images = 2)" in _flat(out)
    _search_one_trial(work, "tonly")


def test_16_bit_values_map_to_consecutive_classes(work, capsys):
    data = _folder(work / "deep", {"train": 6, "test": 2}, [0, 1000, 2000])
    assert _init(capsys, data, "--device", "cpu")[0] == 0
    d = _study(work, "deep")["data"]
    assert d["label_map"] == {"values": {0: 0, 1000: 1, 2000: 2}}
    assert d["classes"] == ["class_0", "class_1000", "class_2000"]
    assert "Untouched holdout: test/" in _flat((work / "studies" / "deep.yaml").read_text())
    _search_one_trial(work, "deep")


def test_rgb_colours_without_a_palette_are_numbered_and_listed(work, capsys):
    data = _folder(work / "paint", {"train": 6}, [BLACK, RED, GREEN])
    code, out = _init(capsys, data, "--device", "cpu")
    assert code == 0
    d = _study(work, "paint")["data"]
    assert d["label_map"] == {"colors": {"#000000": 0, "#00ff00": 1, "#ff0000": 2}}
    assert d["classes"] == ["class_0", "class_1", "class_2"]
    text = (work / "studies" / "paint.yaml").read_text()
    assert "      '#ff0000': 2   # class_2\n" in text  # the colours are listed in the study file
    assert re.search(r"#ff0000 +│ +[\d,]+ │ .* │ +6 │ train/masks/train0\.png +│ class_2", out)
    _search_one_trial(work, "paint")


@pytest.mark.parametrize("palette_file, text, named", [
    ("labelmap.txt", "# label:color_rgb:parts:actions\nbackground:0,0,0::\ncar:255,0,0::\ntree:0,255,0::\n"
                     "void:255,255,255::\n", {"#000000": "background", "#ff0000": "car", "#00ff00": "tree"}),
    ("class_dict.csv", "name,r,g,b\nSky,0,0,0\nRoad,0,255,0\nCar,255,0,0\n",
     {"#000000": "Sky", "#00ff00": "Road", "#ff0000": "Car"}),
    ("palette.csv", "bg,0,0,0\nleaf,0,255,0\nfruit,255,0,0\nunused,9,9,9\n",
     {"#000000": "bg", "#00ff00": "leaf", "#ff0000": "fruit"}),
])
def test_rgb_colours_named_by_a_palette_file(work, capsys, palette_file, text, named):
    data = _folder(work / "named", {"train": 6}, [BLACK, RED, GREEN])
    (data / palette_file).write_text(text)
    code, out = _init(capsys, data, "--device", "cpu")
    assert code == 0, out
    d = _study(work, "named")["data"]
    assert d["classes"] == list(named.values())  # the palette's order
    assert {c: d["classes"][i] for c, i in d["label_map"]["colors"].items()} == named
    assert f"{palette_file} names each colour" in _flat(out)
    if palette_file == "palette.csv":
        assert "1 class(es) with no pixels in any mask left out" in _flat(out) and "unused (#090909)" in out
    _search_one_trial(work, "named")


def test_rgb_voc_colours_named_by_classes_txt_with_the_voc_void(work, capsys):
    voc = [tuple(int(voc_colour(i)[k:k + 2], 16) for k in (1, 3, 5)) for i in range(3)]
    data = _folder(work / "voc", {"train": 6}, [*voc, (224, 224, 192)])
    (data / "classes.txt").write_text("background\naeroplane\nbicycle\nbird\n")
    assert _init(capsys, data, "--device", "cpu")[0] == 0
    d = _study(work, "voc")["data"]
    assert d["classes"] == ["background", "aeroplane", "bicycle"]
    assert d["label_map"] == {"colors": {"#000000": 0, "#800000": 1, "#008000": 2}, "void": ["#e0e0c0"]}
    _search_one_trial(work, "voc")


def test_grey_rgb_masks_are_values_in_disguise(work, capsys):
    data = _folder(work / "greyrgb", {"train": 6}, [BLACK, (255, 255, 255)])
    code, out = _init(capsys, data, "--device", "cpu")
    assert code == 0
    d = _study(work, "greyrgb")["data"]
    assert d["classes"] == ["background", "foreground"]
    assert d["label_map"] == {"colors": {"#000000": 0, "#ffffff": 1}}
    assert "single-channel values in disguise" in _flat(out)
    _search_one_trial(work, "greyrgb")


def test_exif_rotated_photos_are_read_upright(work, capsys):
    data = _folder(work / "photos", {"train": 6}, [0, 1])
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored sideways: turned 90° when shown
    sideways = Image.fromarray(np.full((W, H, 3), 120, np.uint8))  # W x H stored, H x W upright
    sideways.save(data / "train" / "images" / "train0.jpg", exif=exif)
    (data / "train" / "images" / "train0.png").unlink()
    fp = fingerprint(data)
    assert fp.exif_rotated == 1 and fp.sizes.largest == (H, W)
    code, out = _init(capsys, data, "--device", "cpu")
    assert code == 0 and "1 EXIF-rotated (read upright)" in _flat(out)
    _search_one_trial(work, "photos")


# --- malformed folders: one error, every offender named -------------------------------------

def test_a_palette_naming_fewer_colours_than_found(work, capsys):
    data = _folder(work / "few", {"train": 3}, [BLACK, RED, GREEN])
    (data / "labelmap.txt").write_text("background:0,0,0::\ncar:255,0,0::\n")
    code, out = _init(capsys, data)
    assert code == 2
    assert ("error: labelmap.txt names 2 colours; the masks hold 1 it does not name:\n"
            "  #00ff00: 300 pixels in 3 file(s) (train/masks/train0.png, train/masks/train1.png, "
            "train/masks/train2.png)\n"
            "Add them to labelmap.txt, or pass --void for a colour to ignore") in out
    assert not (work / "studies").exists()


def test_rgb_masks_with_colours_outside_the_voc_map_name_the_remedy(work):
    data = _folder(work / "odd", {"train": 2}, [BLACK, (1, 2, 3)])
    (data / "classes.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"classes.txt \(read with the Pascal VOC colour map\) names 3 colours; the "
                                        r"masks hold 1 it does not name:\n  #010203: 200 pixels in 2 file\(s\)"):
        read_encoding(fingerprint(data))


def test_mixed_encodings_float_images_and_wrong_sizes_are_one_error(work, capsys):
    data = _folder(work / "mixed", {"": 4}, [0, 1])
    Image.fromarray(_rects(0, [BLACK, RED])).save(data / "masks" / "img3.png")
    Image.fromarray(np.full((H + 2, W, 3), 5, np.uint8)).save(data / "images" / "img2.png")
    (data / "images" / "img1.png").unlink()
    Image.fromarray(np.zeros((H, W), np.float32)).save(data / "images" / "img1.tif")
    code, out = _init(capsys, data)
    assert code == 2
    assert out.startswith("error: dataset mixed/ has 3 problem(s):\n"
                          "  images/img1.tif: 32-bit floating-point image (mode F); save it with 8- or 16-bit integer "
                          "pixels\n"
                          "  img2: image 48x34 and mask 48x32 differ in size\n"
                          "  masks mix encodings, single-channel 8-bit values: 3 file(s) (masks/img0.png, "
                          "masks/img1.png, masks/img2.png); RGB colours: 1 file(s) (masks/img3.png). Save every mask "
                          "in one encoding")


def test_no_recognisable_layout(work, capsys):
    (work / "loose").mkdir()
    code, out = _init(capsys, work / "loose")
    assert code == 2 and "error: dataset loose/ has neither train/ nor images/ + masks/" in out


def test_init_refuses_to_overwrite_without_force(work, capsys):
    data = _folder(work / "again", {"": 6}, [0, 255])
    assert _init(capsys, data, "--device", "cpu")[0] == 0
    code, out = _init(capsys, data, "--device", "cpu")
    assert code == 2 and "studies/again.yaml already exists; pass --force to overwrite it" in out
    assert _init(capsys, data, "--device", "cpu", "--force")[0] == 0


# --- encoder weights: ImageNet only when this machine can get them --------------------------

def _fake_hf_cache(cache: Path, repo: str, files: tuple[str, ...], revision: str | None) -> None:
    commit = revision or "0" * 40
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    (repo_dir / "snapshots" / commit).mkdir(parents=True)
    for f in files:
        (repo_dir / "snapshots" / commit / f).write_bytes(b"x")
    if revision is None:
        (repo_dir / "refs").mkdir()
        (repo_dir / "refs" / "main").write_text(commit)


def test_imagenet_weights_are_planned_only_when_cached(work):
    from automl.trial.model import imagenet_source

    fp = fingerprint(_folder(work / "w", {"": 6}, [0, 255]))
    plan = plan_study(fp, name="w", device=Machine("cpu"))
    assert plan.space["model"]["encoder_weights"] is None
    assert "random init (encoder_weights: null)" in plan.space_changes[2].reason
    assert "hf download smp-hub/resnet18.imagenet smp-hub/mobilenet_v2.imagenet " \
           "timm/mobilenetv3_small_100.lamb_in1k" in plan.space_changes[2].reason
    for enc in ("resnet18", "mobilenet_v2", "tu-mobilenetv3_small_100"):
        src = imagenet_source(enc)
        _fake_hf_cache(work / "hf", src.repo_id, tuple(g[0] for g in src.files), src.revision)
    assert imagenet_unavailable("resnet18") is None
    plan = plan_study(fp, name="w", device=Machine("cpu"))
    assert plan.space["model"]["encoder_weights"] == "imagenet"


def test_imagenet_unavailable_stops_the_search_before_any_trial(work, capsys):
    data = _folder(work / "nonet", {"": 6}, [0, 255])
    assert _init(capsys, data, "--device", "cpu")[0] == 0
    space = work / "search_spaces" / "nonet.yaml"
    space.write_text(space.read_text().replace("encoder_weights: null", "encoder_weights: imagenet"))
    _narrow(work, "nonet")
    code = main(["search", "studies/nonet.yaml", "--n-trials", "1", "--runs-root", str(work / "runs")])
    out = capsys.readouterr().out
    assert code == 2
    assert (f"error: {Path('studies/../search_spaces/nonet.yaml')} model.encoder_weights: imagenet, but this machine "
            "cannot get the weights of 1 encoder(s):\n"
            f"  resnet18: not in the Hugging Face cache ({work / 'hf'}: smp-hub/resnet18.imagenet) and HF_HUB_OFFLINE "
            "is set\n"
            "Either set `encoder_weights: null` (random init), give a local weights file (`encoder_weights: "
            "path/to/weights.safetensors`), or pre-fill the cache: on a machine with internet run `hf download "
            f"smp-hub/resnet18.imagenet` and copy its Hugging Face cache to {work / 'hf'}") in out
    assert not (work / "runs" / "nonet").exists()  # no study, no trial


def test_the_start_up_check_probes_the_hub_and_refuses_a_missing_file(work, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # nothing listens on port 9: the probe fails at once, as on a machine without internet
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", "http://127.0.0.1:9/{repo_id}/resolve/{revision}/"
                                                                  "{filename}")
    why = imagenet_unavailable("resnet18")
    assert why.startswith(f"not in the Hugging Face cache ({work / 'hf'}: smp-hub/resnet18.imagenet) and the hub "
                          "cannot be reached (")
    monkeypatch.setattr("huggingface_hub.get_hf_file_metadata", lambda url, timeout: object())
    check_encoder_weights("imagenet", ["resnet18"], "space.yaml model.encoder_weights")  # a download would work
    with pytest.raises(ConfigError, match=r"^space.yaml model.encoder_weights: encoder weights file not found: "
                                          r"missing.pth. Give an existing file, `imagenet`, or null"):
        check_encoder_weights("missing.pth", ["resnet18"], "space.yaml model.encoder_weights")


# --- the rules, the plan and the study file, without files ----------------------------------

def _fp(values: dict, kind: str = "8-bit", palette=None, *, layout="flat", splits=None, size=(32, 48)) -> Fingerprint:
    raw = tuple(RawValue(k, n, 1, ("masks/a.png",)) for k, n in sorted(values.items()))
    return Fingerprint(root=Path("/data/x"), layout=layout, splits=splits or {"train": 10},
                       sizes=Sizes(size, size, size), image_modes={"RGB": 10}, exif_rotated=0, mask_kind=kind,
                       mask_modes={"L": 10}, values=raw, palette=palette)


@pytest.mark.parametrize("values, kind, void, rule, classes, ignore, label_map", [
    ({0: 5, 1: 5, 2: 5}, "8-bit", [], "class indices", ["class_0", "class_1", "class_2"], 255, None),
    ({0: 5, 2: 5, 5: 5}, "8-bit", [], "class indices", ["class_0", "class_2", "class_5"], 255,
     {"values": {0: 0, 2: 1, 5: 2}}),
    ({0: 5, 1: 5, 255: 5}, "8-bit", [], "class indices", ["class_0", "class_1"], 255, None),
    ({0: 5, 128: 5, 255: 5}, "8-bit", [], "grey levels", ["class_0", "class_128", "class_255"], 255,
     {"values": {0: 0, 128: 1, 255: 2}}),
    ({0: 5, 255: 5}, "8-bit", [], "binary 0/255", ["background", "foreground"], 255, {"values": {0: 0, 255: 1}}),
    ({0: 5, 1: 5, 9: 5}, "8-bit", [9], "class indices", ["class_0", "class_1"], 9, None),
    ({0: 5, 1: 5, 2: 5}, "8-bit", [2], "class indices", ["class_0", "class_1"], 2, None),
    ({0: 5, 1: 5, 300: 5}, "16-bit", [300], "16-bit values", ["class_0", "class_1"], 255,
     {"values": {0: 0, 1: 1}, "void": [300]}),
    ({"#000000": 5, "#ff0000": 5, "#0000ff": 1}, "RGB", ["#0000FF"], "numbered colours", ["class_0", "class_1"], 255,
     {"colors": {"#000000": 0, "#ff0000": 1}, "void": ["#0000ff"]}),
    ({"#000000": 5, "#010101": 5}, "RGB", [], "class indices", ["class_0", "class_1"], 255,
     {"colors": {"#000000": 0, "#010101": 1}}),
])
def test_encoding_rules(values, kind, void, rule, classes, ignore, label_map):
    enc = read_encoding(_fp(values, kind), [parse_void(str(v)) for v in void])
    assert (enc.rule, list(enc.classes), enc.ignore_index, enc.label_map) == (rule, classes, ignore, label_map)


def test_void_values_must_be_in_the_masks_and_of_their_kind():
    with pytest.raises(ConfigError, match=r"^--void 7: no mask holds it \(found: 0, 255\)$"):
        read_encoding(_fp({0: 1, 255: 1}), [7])
    with pytest.raises(ConfigError, match=r"^--void #ff0000: the masks are single-channel values; give a value"):
        read_encoding(_fp({0: 1, 255: 1}), ["#ff0000"])
    with pytest.raises(ConfigError, match=r"^--void 'x': give a raw mask value"):
        parse_void("x")
    with pytest.raises(DataError, match=r"^the masks hold 1 class \(class_0\) after void \(255\): nothing"):
        read_encoding(_fp({0: 1, 255: 1}), [255])


def test_palette_files_parse_and_two_are_one_too_many(tmp_path):
    (tmp_path / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\ncat:64, 0,128::\n")
    (tmp_path / "images.csv").write_text("file,split\na.png,train\n")
    pal, notes = find_palette(tmp_path)
    assert [(e.name, e.colour) for e in pal.entries] == [("background", "#000000"), ("cat", "#400080")]
    assert notes == ["images.csv: not a CSV of name,r,g,b (line 1: header 'file,split' has no name,r,g,b columns)"]
    (tmp_path / "classes.txt").write_text("background\ncat\n")
    with pytest.raises(DataError, match=r"classes.txt and labelmap.txt both name the classes; keep one of them"):
        find_palette(tmp_path)
    (tmp_path / "classes.txt").unlink()
    (tmp_path / "labelmap.txt").write_text("background:0,0::\n")
    with pytest.raises(DataError, match=r"labelmap.txt: not a Pascal VOC / CVAT label map \(name:r,g,b::\) \(line 1: "
                                        r"'0,0' is not r,g,b with each in 0..255\)"):
        find_palette(tmp_path)


def test_cuda_plan_uses_the_gpu_base_and_a_larger_crop(tmp_path):
    fp = _fp({0: 5, 1: 5}, splits={"train": 400, "val": 100}, layout="folders", size=(600, 800))
    plan = plan_study(fp, name="big", device=Machine("cuda", gpu_gib=16.0), root_dir=tmp_path)
    assert plan.base_space.name == "default.yaml" and plan.space["augment"]["crop"] == [512, 512]
    # 16 GiB at 512²: 0.7 * 16 / (3 * 0.262) = 14 samples, so 32 is dropped
    assert plan.space["batch_size"] == 8 and plan.space["baseline"]["batch_size"] == 8
    cpu = plan_study(fp, name="big", device=Machine("cpu"), root_dir=tmp_path)
    assert cpu.space["augment"]["crop"] == [256, 256] and cpu.base_space.name == "cpu.yaml"
    assert cpu.timing.budget_h == 8 and cpu.settings["budget.trial_epochs"] < 6  # a night, shorter trials


def test_render_study_is_a_valid_study_file_with_the_data_root_relative(tmp_path):
    data = _folder(tmp_path / "d", {"": 6}, [BLACK, RED])
    plan = plan_study(fingerprint(data), name="r", device=Machine("cpu"), root_dir=tmp_path)
    path = tmp_path / "studies" / "r.yaml"
    path.parent.mkdir()
    path.write_text(render_study(plan))
    sf = load_study_file(path)
    assert sf.data.root.resolve() == data.resolve() and sf.data.layout == "flat"
    assert sf.data.label_map.colors == {"#000000": 0, "#ff0000": 1}
    assert yaml.safe_load(path.read_text())["data"]["root"] == "../d"
