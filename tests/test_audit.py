"""`automl audit`: frequencies against masks with exact pixel counts, positions, label sanity,
the report and its study attachment, and a bad folder listing every problem."""

from __future__ import annotations

import numpy as np
import optuna
from PIL import Image

from automl.cli import main
from automl.data.folder import Dataset, Split, load_dataset
from automl.diagnostics.audit import audit_dataset
from automl.diagnostics.findings import findings, pct
from automl.diagnostics.heatmap import position_density
from tests.conftest import write_dataset

CLASSES = ("bg", "road", "bike")
VOID = 255
H, W = 20, 30  # 600 pixels per mask
# Exact pixel counts per image: bg, road, bike, void (each row sums to 600).
COUNTS = {
    "train": [[400, 150, 20, 30], [450, 150, 0, 0], [300, 300, 0, 0], [0, 0, 0, 600], [600, 0, 0, 0],
              [420, 150, 30, 0], [350, 250, 0, 0]],
    "val": [[500, 100, 0, 0], [300, 200, 100, 0]],
}
TRAIN = np.array(COUNTS["train"])   # images x (bg, road, bike, void)
VAL = np.array(COUNTS["val"])


def _mask(counts: list[int], rng: np.random.Generator) -> np.ndarray:
    """Exactly counts[c] pixels of each label; road fills bottom rows first, the rest is shuffled."""
    labels = [*CLASSES_IDX, VOID]
    flat = np.concatenate([np.full(n, lab, np.uint8) for lab, n in zip(labels, counts)])
    road = flat == 1
    rest = rng.permutation(flat[~road])
    # road takes the last pixels in raster order (the bottom rows), everything else the first ones
    return np.concatenate([rest, flat[road]]).reshape(H, W)


CLASSES_IDX = (0, 1, 2)


def _dataset(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    splits = {}
    for name, rows in COUNTS.items():
        masks = [_mask(r, rng) for r in rows]
        images = [np.zeros((H, W, 3), np.uint8) for _ in rows]
        splits[name] = Split(name, [f"{name[0]}{i}" for i in range(len(rows))], images, masks)
    return Dataset(CLASSES, VOID, splits)


def test_frequencies_match_the_constructed_counts():
    audit = audit_dataset(_dataset())
    for name, rows in COUNTS.items():
        c = np.array(rows)
        s = audit.splits[name]
        labelled = c[:, :3].sum()
        np.testing.assert_allclose(s.pixel_share, c[:, :3].sum(0) / labelled)
        np.testing.assert_allclose(s.image_share, (c[:, :3] > 0).mean(0))
        assert s.void_share == c[:, 3].sum() / c.sum()
        assert s.total_pixels == c.sum() and s.n_images == len(rows)
    tr = audit.train
    assert tr.all_void == ["t3"] and tr.single_class == [("t4", 0)]
    assert tr.sizes == {(H, W): len(TRAIN)}
    # road fills the bottom rows of every image that has it
    assert tr.mostly_share("bottom")[1] == 1.0 and tr.mostly_share("top")[1] == 0.0
    # median-frequency weights: freq = class pixels / labelled pixels of the images containing it
    c = TRAIN
    area = c[:, :3].sum(1)
    freq = np.array([c[:, k].sum() / area[c[:, k] > 0].sum() for k in range(3)])
    np.testing.assert_allclose(audit.class_weights(), np.median(freq) / freq)


def test_findings_name_rare_class_layout_and_label_problems():
    audit = audit_dataset(_dataset())
    texts = [str(f) for f in findings(audit)]
    bike_px = TRAIN[:, 2].sum() / TRAIN[:, :3].sum()
    bike_images = int((TRAIN[:, 2] > 0).sum())
    bike = next(t for t in texts if t.startswith("bike is"))
    assert (f"bike is {pct(bike_px)} of pixels and appears in {pct(bike_images / len(TRAIN))} of images "
            f"({bike_images} of {len(TRAIN)})") in bike
    assert "target-centred crop" in bike
    assert "oversample" not in bike   # in 2 of 7 images: not under the 20 % image-share rule
    road_images = int((TRAIN[:, 1] > 0).sum())
    assert any(f"road: at least 67% of its pixels sit in the bottom half in 100 % of the {road_images} images"
               in t for t in texts)
    assert any("1 train mask(s) hold no labelled pixel (all 255): train/t3" in t for t in texts)
    assert any("hold a single class (bg: train/t4)" in t for t in texts)
    bike_val = VAL[:, 2].sum() / VAL[:, :3].sum()
    assert any(t.startswith(f"bike is {pct(bike_px)} of train pixels but {pct(bike_val)} of val pixels")
               for t in texts)


def test_position_density_is_the_class_share_per_cell():
    top = np.zeros((8, 12), np.uint8)
    top[:4] = 1                             # class 1 fills the top half
    small = np.zeros((4, 6), np.uint8)      # another size: only class 0
    d = position_density([top, small], 2, VOID, grid=4)
    np.testing.assert_allclose(d[1, :2], 0.5)   # top half: one of two images has class 1 there
    np.testing.assert_allclose(d[1, 2:], 0.0)
    np.testing.assert_allclose(d.sum(0), 1.0)   # no void: shares add up to one


def test_cli_writes_report_and_attaches_it_to_the_study(tiny_study, runs_root, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    root = write_dataset(_dataset(), tmp_path / "data")
    study_path = tiny_study(**{"data.root": str(root), "data.classes": list(CLASSES)})
    assert main(["audit", str(study_path), "--runs-root", str(runs_root)]) == 0
    out = runs_root / "tiny" / "audit"
    report = (out / "audit.md").read_text()
    assert "bike is " in report and "![class positions](heatmaps.png)" in report
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["heatmap_bg.png", "heatmap_bike.png", "heatmap_road.png", "heatmaps.png"]
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{runs_root / 'tiny' / 'study.db'}")
    assert study.user_attrs["audit_findings"] == [str(f) for f in findings(audit_dataset(load_dataset(
        root, CLASSES, VOID)))]
    names = sorted(m.filename for m in optuna.artifacts.get_all_artifact_meta(study))
    assert names == sorted(["audit.md", *pngs])
    assert set(study.user_attrs["audit_artifacts"]) == set(names)
    from optuna_dashboard import get_note

    assert "## Data audit" in get_note(study)  # the study note shows it at once, not after the next trial


def test_bare_folder_audit_and_bad_folder_lists_every_problem(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    root = write_dataset(_dataset(), tmp_path / "data")
    out = tmp_path / "out"
    assert main(["audit", "--data", str(root), "--classes", "bg,road,bike", "--out", str(out)]) == 0
    assert (out / "audit.md").is_file()
    capsys.readouterr()
    # break it in several ways at once
    (root / "train" / "images" / "t1.png").write_bytes(b"not an image")
    (root / "train" / "masks" / "t2.png").unlink()
    Image.fromarray(np.zeros((H + 1, W), np.uint8)).save(root / "val" / "masks" / "v0.png")
    Image.fromarray(np.full((H, W), 7, np.uint8)).save(root / "val" / "masks" / "v1.png")
    (root / "train" / "images" / "t0.jpg").write_bytes((root / "train" / "images" / "t0.png").read_bytes())
    code = main(["audit", "--data", str(root), "--classes", "bg,road,bike", "--out", str(out)])
    text = capsys.readouterr().out
    assert code != 0
    # one error lists them all: pairing problems do not hide the per-file ones
    for problem in ("train/images/t2.png: no mask with this stem", "train/images/t1.png: unreadable",
                    "val/v0: image 30x20 and mask 30x21 differ in size",
                    "val/masks/v1.png: labels [7] are neither a class", "train/images/t0.png: same stem as t0.jpg"):
        assert problem in text, text
    assert "has 5 problem(s)" in text
    assert str(tmp_path) not in text   # paths relative to the data root


def test_a_class_spread_evenly_is_no_layout_finding_but_a_two_thirds_share_is():
    """A class spread over the whole frame, a little denser on the right (51-59 % of its pixels
    per image): a bare majority in every image, not a layout. With 3/4 of its pixels on the
    right in every image, it is one."""
    rng = np.random.default_rng(0)
    even, right = [], []
    for _ in range(12):
        m = np.zeros((24, 32), np.uint8)
        m[:, :16][rng.random((24, 16)) < 0.30] = 1
        m[:, 16:][rng.random((24, 16)) < 0.37] = 1
        even.append(m)
        r = np.zeros((24, 32), np.uint8)
        r[:, 16:][rng.random((24, 16)) < 0.45] = 1
        r[:, :16][rng.random((24, 16)) < 0.15] = 1  # 3/4 of its pixels on the right
        right.append(r)
    shares = [m[:, 16:].sum() / m.sum() for m in even]
    assert 0.5 < min(shares) and max(shares) < 0.6  # a majority on the right in every image
    images = [np.zeros((24, 32, 3), np.uint8)] * 12
    for masks, expected in ((even, []), (right, ["right"])):
        ds = Dataset(("bg", "cell"), VOID, {"train": Split("train", [f"t{i}" for i in range(12)], images, masks)})
        texts = [f.text for f in findings(audit_dataset(ds)) if f.kind == "layout"]
        assert [side for side in ("top", "bottom", "left", "right") if any(f" {side} half" in t for t in texts)] \
            == expected, texts


def test_binary_masks_read_with_the_foreground_as_void_are_named():
    """The 0/255 trap: masks of 0 and 255 with ignore_index 255 leave one class and void."""
    masks = [np.where(np.arange(20 * 30).reshape(20, 30) % 3 == 0, VOID, 0).astype(np.uint8) for _ in range(4)]
    images = [np.zeros((20, 30, 3), np.uint8)] * 4
    ds = Dataset(("background", "cell"), VOID, {"train": Split("train", list("abcd"), images, masks)})
    trap = [str(f) for f in findings(audit_dataset(ds)) if "only two values" in f.text]
    assert trap == ["train masks hold only two values, background (0) and the ignore index 255, which covers "
                    "33 % of pixels: if 255 marks a class (binary masks of 0 and 255), every pixel of it is read "
                    "as void and never learnt. Remedy: map the values in the study file, e.g. data.label_map: "
                    "{values: {0: 0, 255: 1}} with two data.classes, or run `automl init` on the folder, which "
                    "writes it."]
    assert not [f for f in findings(audit_dataset(_dataset())) if "only two values" in f.text]
