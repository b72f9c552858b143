"""Which images select and which are held out: one rule, applied by every process that loads the data.

Without ``data.val_fraction`` the folder's ``val/`` selects (every trial's score, the TTA and
INT8 decisions) and ``test/``, when present, is the untouched holdout. With it, a seeded share of
``train/`` is carved off as the selection split and the folder's ``test/``, else its ``val/``,
becomes the holdout (with both present, ``val/`` is left out: it is neither trained on nor
selected on). The holdout is scored once, by the shipped model, after every decision.

The carve orders the train stems by ``sha1(f"{seed}:{stem}")``, not by ``random.shuffle``: a
hash is the same on every Python version and machine, so every worker, every restart and the
final stage carve the same images, and it does not depend on the order files are listed in.
"""

from __future__ import annotations

import hashlib
import logging

from automl.config import DataSection
from automl.data.cache import take
from automl.data.folder import Dataset, Split
from automl.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# What a study remembers of its split; a later session must load the same one.
RECORD_ATTR = "data_split"
HOLDOUT_NOTE = "untouched holdout: scored once, after every decision"


def carve_order(stems: list[str], seed: int) -> list[str]:
    """The train stems in carving order (the first ones go to the selection split)."""
    return sorted(stems, key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest())


def carve_count(n_train: int, fraction: float, floor: int) -> int:
    """Images carved from ``n_train``: the fraction, at least ``floor``, leaving one to train on."""
    n = max(floor, round(fraction * n_train))
    if n >= n_train:
        raise DataError(f"data.val_fraction {fraction:g}: train/ has {n_train} image(s); a selection split of "
                        f"{n} (at least data.min_val_images = {floor}) leaves none to train on. Add images to "
                        "train/ or a val/ folder and unset data.val_fraction")
    return n


def _subset(split: Split, name: str, keep: set[str]) -> Split:
    idx = [i for i, s in enumerate(split.stems) if s in keep]  # folder order, as loaded
    return Split(name, [split.stems[i] for i in idx], take(split.images, idx), take(split.masks, idx),
                 [split.shapes[i] for i in idx])


def assign_roles(ds: Dataset, data: DataSection) -> Dataset:
    """Set ``ds``'s selection split (``val``) and holdout as ``data`` asks; logs the outcome."""
    folder = dict(ds.splits)
    if data.val_fraction is None:
        ds.holdout_key = "test" if "test" in folder else None
        ds.sources = {"train": "train/", "val": "val/", **({"holdout": "test/"} if ds.holdout_key else {})}
    else:
        train = folder["train"]
        n = carve_count(len(train), data.val_fraction, data.min_val_images)
        carved = set(carve_order(train.stems, data.split_seed)[:n])
        held = "test" if "test" in folder else "val" if "val" in folder else None
        if held == "test" and "val" in folder:
            log.warning("val/ (%d images) is not used: data.val_fraction carves the selection split from "
                        "train/ and test/ is the holdout", len(folder["val"]))
        ds.splits = {"train": _subset(train, "train", set(train.stems) - carved), "val": _subset(train, "val", carved)}
        if held is not None:
            h = folder[held]
            ds.splits["holdout"] = Split("holdout", h.stems, h.images, h.masks, h.shapes)
        ds.holdout_key = None if held is None else "holdout"
        ds.sources = {"train": "train/", "val": f"carved from train/ ({data.val_fraction:g}, seed "
                                                f"{data.split_seed})", **({"holdout": f"{held}/"} if held else {})}
        if n == data.min_val_images and n > round(data.val_fraction * len(train)):
            log.info("selection split: %d images, the floor (data.min_val_images); %g of %d train images is fewer",
                     n, data.val_fraction, len(train))
    ds.record = split_record(ds, data)
    log.info("data: %d train, %d selection (%s), %s", len(ds.train), len(ds.val), ds.sources["val"],
             f"holdout {ds.sources['holdout']} ({len(ds.holdout)} images, scored once by the shipped model)"
             if ds.holdout is not None else "no untouched holdout")
    return ds


def _stems_sha1(ds: Dataset) -> str:
    h = hashlib.sha1()
    for role in ("train", "val"):
        for stem in sorted(ds.splits[role].stems):
            h.update(f"{role}/{stem}\n".encode())
    return h.hexdigest()


def split_record(ds: Dataset, data: DataSection) -> dict:
    """What the search trained and selected on: a study keeps one for its whole life. The label
    map is part of it (another map makes other masks); a study without one records none, as
    studies did before the map existed."""
    carved = data.val_fraction is not None
    mapped = {} if data.label_map is None else {"label_map": data.label_map.model_dump(mode="json")}
    return {"val_fraction": data.val_fraction, "split_seed": data.split_seed if carved else None,
            "train_images": len(ds.train), "selection_images": len(ds.val), "selection": ds.sources["val"],
            **mapped, "stems_sha1": _stems_sha1(ds)}


def keep_data_split(study, ds: Dataset) -> None:
    """Record ``ds``'s split on a new study; refuse a session whose split differs from the record.

    Trials scored on different selection splits do not compare, and a holdout that an earlier
    session selected on is no longer untouched: a changed ``data.val_fraction``, ``split_seed`` or
    ``train/`` folder needs a new study. A study from before the record keeps its first one.
    """
    stored = study.user_attrs.get(RECORD_ATTR)
    if stored is None:
        study.set_user_attr(RECORD_ATTR, ds.record)
        return
    check_same_split(stored, ds.record, study.study_name)


def check_same_split(stored: dict, now: dict, study_name: str) -> None:
    if stored == now:
        return
    keys = [*now, *(k for k in stored if k not in now)]  # a label map given up is a change too
    diff = [f"{k} {stored.get(k)!r} → {now.get(k)!r}" for k in keys if k != "stems_sha1" and stored.get(k) != now.get(k)]
    if stored.get("stems_sha1") != now.get("stems_sha1"):
        diff.append("other images in the train or selection split")
    raise ConfigError(f"study {study_name} was run on another data split ({'; '.join(diff)}). A study keeps one "
                      "split for its whole life: restore data.val_fraction, data.split_seed, data.label_map and "
                      "the train/ and val/ folders it was created with, or give the study a new name")
