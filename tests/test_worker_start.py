"""Workers started at the same moment on a fresh machine: the synthetic data and Optuna's schema
are created once, and no worker sees them half made."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy

from automl.config import StorageSection
from automl.data.folder import load_dataset
from automl.data.synthetic import CLASSES, generate
from automl.study.storage import open_storage


def test_concurrent_synthetic_generation_never_shows_a_half_written_dataset(tmp_path):
    root = tmp_path / "data"
    spec = dict(n_train=48, n_val=4, height=40, width=56, seed=3)

    def generate_then_read(_):
        generate(root, **spec)
        return len(load_dataset(root, CLASSES, 255).train)

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(generate_then_read, range(8))) == [48] * 8
    assert not [p for p in tmp_path.iterdir() if p.name != "data"]  # no temporary folder left behind


def test_a_dataset_is_invisible_until_complete_and_a_faster_twin_wins(tmp_path, monkeypatch):
    """Deterministic version of the race above: while one worker generates, another generates
    the same dataset and moves it into place first. Nothing is at the root until a complete
    dataset is; the slower worker keeps the one that is there instead of failing on its rename."""
    from automl.data import synthetic

    root = tmp_path / "data"
    spec = dict(n_train=12, n_val=3, height=32, width=32, seed=1)
    real, visible, twin = synthetic.make_sample, [], []

    def slow_worker_sample(rng, height, width):
        visible.append(root.exists())
        if len(visible) == 5:  # mid-generation: the other worker runs from start to end
            monkeypatch.setattr(synthetic, "make_sample", real)
            generate(root, **spec)
            twin.append(root.stat().st_ino)
            monkeypatch.setattr(synthetic, "make_sample", slow_worker_sample)
        return real(rng, height, width)

    monkeypatch.setattr(synthetic, "make_sample", slow_worker_sample)
    generate(root, **spec)
    assert visible == [False] * 5 + [True] * 10  # the twin's complete dataset, never a partial one
    assert root.stat().st_ino == twin[0]  # kept, not swapped (readers would see no folder meanwhile)
    assert len(load_dataset(root, CLASSES, 255).train) == 12
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_a_complete_folder_that_lands_during_the_check_is_kept(tmp_path):
    """The race CI hit: a writer looks (nothing there), a twin's complete folder lands, and the
    writer must keep it rather than swap it out, which leaves readers a moment with no folder."""
    from automl.atomic import atomic_dir

    out, looks = tmp_path / "data", []

    def complete(path):
        looks.append(path.exists())
        if len(looks) == 1:  # right after the first look, the twin's rename lands
            path.mkdir()
            (path / "done").write_text("twin")
            return False
        return (path / "done").is_file()

    with atomic_dir(out, keep_if=complete) as tmp:
        (tmp / "done").write_text("mine")
    assert (out / "done").read_text() == "twin"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def _fresh_database(url: str, name: str) -> str:
    """CREATE DATABASE name on the server of ``url``; the URL of the new, empty database."""
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


def _drop_database(url: str, name: str) -> None:
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        force = " WITH (FORCE)" if url.startswith("postgresql") else ""  # idle pooled connections
        conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}{force}"))
    engine.dispose()


@pytest.mark.parametrize("server", ["pg_url", "mysql_url"])
def test_workers_opening_an_empty_database_together_all_get_the_storage(server, request):
    url = request.getfixturevalue(server)
    name = f"automl_race_{uuid.uuid4().hex[:8]}"
    fresh = _fresh_database(url, name)
    try:
        with ThreadPoolExecutor(4) as pool:
            storages = list(pool.map(lambda _: open_storage(fresh, StorageSection()), range(4)))
        assert len(storages) == 4
        for s in storages:
            s.engine.dispose()
    finally:
        _drop_database(url, name)
