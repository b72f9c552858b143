"""The decoded-data cache: reused across processes, invalidated per file, built once by two
processes that start together, damaged records rebuilt with a warning, variable image sizes
trained and scored from it, and `data.cache: off` as before."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automl.data.cache import INDEX, ArraySeq, CacheSpec
from automl.data.folder import load_dataset

CLASSES = ("bg", "fg")
ROOT = Path(__file__).resolve().parents[1]


def _folder(root: Path, sizes=((24, 32),) * 4) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", len(sizes)), ("val", 2)):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = sizes[i % len(sizes)]
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / split / "images" / f"{i}.png")
            Image.fromarray((rng.random((h, w)) < 0.4).astype(np.uint8)).save(root / split / "masks" / f"{i}.png")
    return root


def _load(root: Path, cache: Path | None):
    return load_dataset(root, CLASSES, 255, cache=None if cache is None else CacheSpec(cache))


def _arrays(ds):
    return {name: ([np.asarray(a) for a in s.images], [np.asarray(m) for m in s.masks]) for name, s in ds.splits.items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(
        len(a[k][j]) == len(b[k][j]) and all(np.array_equal(x, y) for x, y in zip(a[k][j], b[k][j]))
        for k in a for j in (0, 1))


LOAD_IN_CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from automl.data.cache import CacheSpec
    from automl.data.folder import load_dataset
    if len(sys.argv) > 3:  # start together: wait for the go file
        while not Path(sys.argv[3]).exists():
            time.sleep(0.01)
    ds = load_dataset(Path(sys.argv[1]), ("bg", "fg"), 255, cache=CacheSpec(Path(sys.argv[2])))
    print(json.dumps(ds.cache.as_dict()))
""")


def _child(root: Path, cache: Path, go: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LOAD_IN_CHILD, str(root), str(cache), *([str(go)] if go else [])],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _report(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_the_cache_is_reused_by_another_process_and_rebuilt_per_changed_file(tmp_path):
    root, cache = _folder(tmp_path / "data"), tmp_path / "cache"
    built = _report(_child(root, cache))
    assert (built["records"], built["built"], built["reused"]) == (6, 6, 0)
    plain = _arrays(_load(root, None))
    ds = _load(root, cache)
    assert (ds.cache.reused, ds.cache.built) == (6, 0)
    assert isinstance(ds.train.images, ArraySeq) and ds.train.images.on_disk == 4  # mapped, not held
    assert _same(_arrays(ds), plain)
    # one mask changes: it alone is decoded again, and its new pixels are what the split holds
    changed = root / "train" / "masks" / "2.png"
    Image.fromarray(np.ones((24, 32), np.uint8)).save(changed)
    ds = _load(root, cache)
    assert (ds.cache.reused, ds.cache.built) == (5, 1)
    assert np.array_equal(np.asarray(ds.train.masks[2]), np.ones((24, 32), np.uint8))
    # a removed pair is dropped from the cache, with its records
    for sub in ("images", "masks"):
        (root / "val" / sub / "1.png").unlink()
    ds = _load(root, cache)
    assert (ds.cache.records, ds.cache.dropped, ds.cache.built) == (5, 1, 0)
    assert len(list(ds.cache.path.glob("*.npy"))) == 10


def test_two_processes_building_together_end_with_one_complete_cache(tmp_path):
    root, cache, go = _folder(tmp_path / "data", sizes=((40, 56),) * 12), tmp_path / "cache", tmp_path / "go"
    procs = [_child(root, cache, go) for _ in range(2)]
    go.touch()
    reports = [_report(p) for p in procs]
    assert sorted(r["built"] for r in reports) == [0, 14]  # one decoded everything, the other reused it
    assert all(r["records"] == 14 for r in reports)
    folder = Path(reports[0]["path"]) if Path(reports[0]["path"]).is_absolute() else ROOT / reports[0]["path"]
    index = json.loads((folder / INDEX).read_text())["records"]
    assert len(index) == 14 and len(list(folder.glob("*.npy"))) == 28
    assert not [p for p in folder.iterdir() if p.name.startswith(".records")]  # no temporary folder left


def test_a_damaged_record_or_index_is_rebuilt_with_a_warning(tmp_path, caplog):
    root, cache = _folder(tmp_path / "data"), tmp_path / "cache"
    plain = _arrays(_load(root, None))
    ds = _load(root, cache)
    folder = ds.cache.path
    record = sorted(folder.glob("*.mask.npy"))[0]
    record.write_bytes(record.read_bytes()[:-10])  # truncated
    with caplog.at_level(logging.WARNING):
        ds = _load(root, cache)
    assert (ds.cache.reused, ds.cache.built) == (5, 1) and len(ds.cache.rebuilt) == 1
    assert any("is damaged" in r.message and "truncated" in r.message for r in caplog.records)
    assert _same(_arrays(ds), plain)
    (folder / INDEX).write_text("{not json")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ds = _load(root, cache)
    assert ds.cache.built == 6 and any("index" in r.message and "unreadable" in r.message for r in caplog.records)
    assert _same(_arrays(ds), plain)


def test_cache_off_and_small_data_keep_arrays_in_memory(tmp_path, tiny_study, runs_root, caplog):
    from automl.config import load_study_file
    from automl.study.runner import load_data

    root = _folder(tmp_path / "data")
    for mode in ("off", "auto"):  # auto on a CPU: this data is far under the threshold
        path = tiny_study(**{"data": {"root": str(root), "classes": list(CLASSES), "cache": mode}})
        with caplog.at_level(logging.INFO):
            ds = load_data(load_study_file(path, runs_root=runs_root))
        assert ds.cache is None and isinstance(ds.train.images, list) and isinstance(ds.train.images[0], np.ndarray)
    assert not (runs_root / "data_cache").exists()
    assert any("data cache not used" in r.message for r in caplog.records)


def test_running_out_of_memory_while_decoding_is_not_called_a_data_problem(tmp_path, monkeypatch):
    """Decoding into the process's memory can run out (a dataset larger than memory with
    data.cache: off): one error says so and names the cache, instead of listing every image as
    unreadable."""
    import automl.data.folder as folder
    from automl.errors import DataError

    root = _folder(tmp_path / "data")
    real, calls = folder.read_image, []

    def read_image(path):
        calls.append(path)
        if len(calls) > 2:
            raise MemoryError
        return real(path)

    monkeypatch.setattr(folder, "read_image", read_image)
    with pytest.raises(DataError) as err:
        _load(root, None)
    assert "out of memory" in str(err.value) and "data.cache: on" in str(err.value)
    assert "unreadable" not in str(err.value)


@pytest.mark.parametrize("trainval", [False, True])
def test_variable_sizes_train_and_score_from_the_cache(tmp_path, tiny_study, runs_root, trainval):
    """Images of two sizes, mapped from the cache: a trial trains and scores (val batches group
    same-size images), and the final's train + val split keeps its records on disk."""
    from automl.config import load_study_file
    from automl.final.retrain import trainval_split
    from automl.study.runner import prepare, run_all

    root = _folder(tmp_path / "data", sizes=((32, 32), (40, 64)) * 4)
    path = tiny_study(**{"data": {"root": str(root), "classes": list(CLASSES), "cache": "on"},
                         "budget.n_trials": 1, "budget.trial_epochs": 1})
    prep = prepare(load_study_file(path, runs_root=runs_root))
    assert prep.data.train.images.on_disk == 8 and prep.data.val.sizes == {(32, 32), (40, 64)}
    if trainval:
        both = trainval_split(prep.data)
        assert isinstance(both.images, ArraySeq) and both.images.on_disk == 10
        return
    study = run_all(prep)
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    assert 0.0 <= study.trials[0].value <= 1.0
