"""Shared fixtures: tiny synthetic data and tiny study/space files, all under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

TINY_SPACE = {
    "model": {"architectures": ["Unet", "Linknet"], "encoders": ["resnet18"], "encoder_depth": 3,
              "aux_head": {"choices": [False, True]}},
    "optimizer": {"adamw": {"lr": {"low": 1e-3, "high": 1e-2, "log": True}},
                  "sgd": {"lr": {"low": 1e-7, "high": 1e-6, "log": True}, "nesterov": {"choices": [True, False]}}},
    "schedule": {"cosine": {"warmup_frac": {"low": 0.0, "high": 0.1}}, "constant": {}},
    "batch_size": {"choices": [4, 8]},
    "augment": {"crop": [32, 32], "hflip": 0.5, "color_jitter": {"low": 0.0, "high": 0.2},
                "target_crop": {"low": 0.0, "high": 0.5}},
    "loss": {"ce": 1.0, "dice": {"low": 0.0, "high": 1.0}, "aux": 0.2},
    "baseline": {"model": "Unet/resnet18", "optimizer": "adamw", "adamw.lr": 5e-3, "schedule": "cosine",
                 "aux_head": False},
}


def write_yaml(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def tiny_study_doc(name: str = "tiny", **changes) -> dict:
    doc = {
        "name": name,
        "data": {"synthetic": {"n_train": 16, "n_val": 6, "height": 40, "width": 56, "seed": 1},
                 "classes": ["background", "disc", "box", "triangle", "ring"]},
        "search_space": "space.yaml",
        "budget": {"n_trials": 3, "trial_epochs": 2},
        "eval": {"batch_size": 8, "subset": 0.5},
        "pruner": {"type": "median", "n_startup_trials": 1, "min_resource": 1},
        "sampler": {"seed": 0, "n_startup_trials": 2},
        "device": "cpu",
        "storage": {"heartbeat_interval": 2, "grace_period": 6},
        # the tiny runs in tests search however few trials fit (the rule has its own test)
        "run": {"min_search_trials": 1},
    }
    for dotted, value in changes.items():
        node = doc
        *parents, leaf = dotted.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    return doc


@pytest.fixture
def tiny_study(tmp_path: Path):
    """Factory: writes space.yaml + <name>.yaml under tmp_path and returns the study path."""

    def make(name: str = "tiny", space: dict | None = None, **changes) -> Path:
        write_yaml(tmp_path / "space.yaml", space or TINY_SPACE)
        return write_yaml(tmp_path / f"{name}.yaml", tiny_study_doc(name, **changes))

    return make


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    return tmp_path / "runs"


PG_URL = os.environ.get("AUTOML_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("AUTOML_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def _db_or_skip(url: str, required_by: str) -> str:
    import sqlalchemy

    try:
        sqlalchemy.create_engine(url).connect().close()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get(required_by):
            pytest.fail(f"database required by CI is unreachable: {type(exc).__name__}")
        pytest.skip(f"no database server reachable ({type(exc).__name__})")
    return url


@pytest.fixture
def pg_url() -> str:
    return _db_or_skip(PG_URL, "AUTOML_REQUIRE_DB")


@pytest.fixture
def mysql_url() -> str:
    return _db_or_skip(MYSQL_URL, "AUTOML_REQUIRE_MYSQL")


def write_dataset(ds, root: Path) -> Path:
    """Write an in-memory Dataset as a folder ``root/{split}/{images,masks}/`` of PNGs."""
    from PIL import Image

    for split in ds.splits.values():
        for sub in ("images", "masks"):
            (root / split.name / sub).mkdir(parents=True, exist_ok=True)
        for stem, img, m in zip(split.stems, split.images, split.masks):
            Image.fromarray(img).save(root / split.name / "images" / f"{stem}.png")
            Image.fromarray(m).save(root / split.name / "masks" / f"{stem}.png")
    return root


@pytest.fixture(autouse=True)
def _no_stop_request_left_over():
    """A test that runs the CLI's SIGTERM handler in-process leaves its stop request behind (a real
    process exits on it); the next test must not inherit it."""
    import signal

    from automl import interrupts

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    interrupts.stop_handled()
    # nor a held-signal stack, nor the signal handlers a test installed in-process
    interrupts._stack.clear()
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
