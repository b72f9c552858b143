"""Shared set-up of the CamVid-small benchmarks: the class list, a fresh work folder and pinning."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import optuna
import yaml

CAMVID_CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "signsymbol", "fence", "car",
                  "pedestrian", "bicyclist"]


def camvid_data(root: Path) -> dict:
    """The study file's `data:` section for CamVid-small (void = 11)."""
    return {"root": str(root.resolve()), "classes": CAMVID_CLASSES, "ignore_index": 11}


def fresh_workdir(workdir: Path) -> Path:
    """An empty work folder holding a copy of search_spaces/cpu.yaml as space.yaml."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    space = yaml.safe_load((Path(__file__).parents[1] / "search_spaces" / "cpu.yaml").read_text())
    (workdir / "space.yaml").write_text(yaml.safe_dump(space))
    return workdir


def pin(cpu: int | None) -> int:
    """One core and one thread for this process (parallel mode); returns the thread count."""
    import torch

    if cpu is None:
        return torch.get_num_threads()
    os.sched_setaffinity(0, {cpu})
    torch.set_num_threads(1)
    return 1
