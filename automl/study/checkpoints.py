"""Keep the weights of the best completed trial so far under ``runs/<study>/best_trial/``.

``automl inspect`` and the dashboard use them; the final stage retrains from the config anyway.

The weights exist before the trial is complete: the objective's completed hook runs while the
model is in memory, Optuna tells the result afterwards. A kill in between must not leave
``best_trial`` naming a trial that then fails (and is retried under another number). So the hook
only stages the weights (``.best_trial.pending/<study>.<number>``); :meth:`promote` moves them in
once the storage says the trial is COMPLETE: after each trial, and when a search (re)starts,
which also drops what trials that did not complete left staged. Several workers may finish trials
at once: under a file lock, the folder is replaced (atomically) only by a better value. The
folder's ``trial_config.json`` names the trial and its value, and lands with the weights.

A save can fail (a full disk). The trial then carries the reason (user attr
``weights_not_saved``), this worker keeps the weights in memory and stages them again when its
next trial completes, and :func:`missing_best_weights` tells the summary and ``automl inspect``
that the best trial's weights are not in the folder, instead of letting them use older ones.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import optuna
from filelock import FileLock
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from automl.atomic import clean_leftovers, swap_in
from automl.config import StudyFile
from automl.study.stages import search_study_names
from automl.trial.checkpoint import TRIAL_CONFIG_FILE, save_model
from automl.trial.engine import FitResult
from automl.trial_config import TrialConfig

log = logging.getLogger(__name__)

NOT_SAVED_ATTR = "weights_not_saved"


@dataclass
class _Unsaved:
    """The best weights so far, which could not be written yet."""

    model: nn.Module  # a CPU copy: the trial's own model may be freed or trained on
    cfg: TrialConfig
    extra: dict


def read_recorded(folder: Path) -> dict:
    """What ``best_trial/trial_config.json`` says of the weights beside it ({} if none)."""
    try:
        info = json.loads((Path(folder) / TRIAL_CONFIG_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {k: v for k, v in info.items() if k != "config"}


class BestTrialCheckpoint:
    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir) / "best_trial"
        self.pending = Path(run_dir) / ".best_trial.pending"
        self.lock = FileLock(Path(run_dir) / ".best_trial.lock", timeout=300)
        self.unsaved: _Unsaved | None = None

    def recorded_value(self) -> float:
        try:
            return float(read_recorded(self.dir)["value"])
        except (KeyError, TypeError, ValueError):
            return float("-inf")

    def restore(self, model: nn.Module, cfg: TrialConfig, missing: MissingWeights) -> bool:
        """Put a retrained model of the trial whose weights are missing in the folder (``automl
        rerun``), unless a better one landed meanwhile. The recorded value stays the trial's."""
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            # a better trial that landed since the check stays; a folder unchanged since the check
            # (e.g. holding a trial that did not complete) is replaced
            if missing.value <= self.recorded_value() and read_recorded(self.dir) != missing.found:
                return False
            save_model(model, cfg, self.dir, extra={"trial_number": missing.trial_number, "value": missing.value,
                                                    "study_name": missing.study_name, "retrained": True})
            return True

    def __call__(self, trial: optuna.Trial, cfg: TrialConfig, result: FitResult, value: float) -> None:
        """Completed hook: stage the weights if they beat the ones in place."""
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            current = self.recorded_value()
            pending = self.unsaved
            if pending is not None and pending.extra["value"] > max(current, value):
                # an earlier best that could not be written: try again (its trial is told by now,
                # so promote() moves it in), keep this worse trial's weights aside
                if self._stage(pending.model, pending.cfg, pending.extra, trial=None):
                    self.unsaved = None
                return
            self.unsaved = None  # this trial is as good (or nothing is pending)
            if value > current:
                extra = {"trial_number": trial.number, "value": value, "study_name": trial.study.study_name}
                self._stage(result.model, cfg, extra, trial=trial)

    def _stage(self, model: nn.Module, cfg: TrialConfig, extra: dict, trial: optuna.Trial | None) -> bool:
        try:
            save_model(model, cfg, self.pending / f"{extra['study_name']}.{extra['trial_number']}", extra=extra)
            return True
        except OSError as exc:
            from automl.study.storage import free_space

            why = f"{exc.strerror or exc}; {free_space(self.dir.parent)}"
            log.error("trial %d is the best so far, but its weights could not be saved to %s (%s); trying "
                      "again when the next trial completes", extra["trial_number"], self.dir, why)
            if trial is not None:
                try:
                    trial.set_user_attr(NOT_SAVED_ATTR, why)
                except Exception:  # noqa: BLE001 - the storage may be on the same full disk
                    log.debug("could not record %s on trial %d", NOT_SAVED_ATTR, trial.number)
                self.unsaved = _Unsaved(copy.deepcopy(model).cpu(), cfg, extra)
            return False

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Optuna callback (the trial is told by now)."""
        if trial.state == TrialState.COMPLETE:
            self.promote(study._storage)

    def promote(self, storage: optuna.storages.BaseStorage) -> None:
        """Move in the best staged weights whose trial is COMPLETE, if they beat those in place;
        drop the staged weights of trials that ended otherwise (or lost)."""
        if not self.dir.parent.is_dir():
            return
        with self.lock:
            clean_leftovers(self.dir.parent)  # a swap a kill interrupted is undone first
            if not self.pending.is_dir():
                return
            clean_leftovers(self.pending)
            best, best_value = None, self.recorded_value()
            for folder in sorted(p for p in self.pending.iterdir() if not p.name.startswith(".")):
                info = read_recorded(folder)
                state = _trial_state(storage, info.get("study_name"), info.get("trial_number"))
                if state in (TrialState.RUNNING, TrialState.WAITING):
                    continue  # its trial is being told, or its owner will be reaped
                if state == TrialState.COMPLETE and info["value"] > best_value:
                    if best is not None:
                        shutil.rmtree(best, ignore_errors=True)
                    best, best_value = folder, info["value"]
                else:
                    shutil.rmtree(folder, ignore_errors=True)
            if best is not None:
                swap_in(best, self.dir)
            if not any(self.pending.iterdir()):
                self.pending.rmdir()


def _trial_state(storage: optuna.storages.BaseStorage, study_name: str | None, number: int | None) -> TrialState | None:
    if study_name is None or number is None:
        return None
    try:
        study_id = storage.get_study_id_from_name(study_name)
        return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, number)).state
    except KeyError:  # the study (or trial) is gone
        return None


def _best_completed(studies: list[optuna.Study]) -> tuple[optuna.Study, FrozenTrial] | None:
    """The completed trial with the highest val mIoU (first objective), over all ``studies``: the
    one whose weights BestTrialCheckpoint keeps."""
    best = None
    for study in studies:
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.values and (best is None or t.values[0] > best[1].values[0]):
                best = (study, t)
    return best


def _other_host(trial: FrozenTrial) -> bool:
    host = trial.user_attrs.get("worker", "").rpartition(":")[0]
    return bool(host) and host != socket.gethostname()


@dataclass
class MissingWeights:
    study_name: str
    trial_number: int
    value: float
    message: str
    found: dict  # what the folder held (read_recorded) when checked


def missing_best_weights(sf: StudyFile, storage: optuna.storages.BaseStorage, rerun: str) -> MissingWeights | None:
    """None when ``runs/<study>/best_trial`` holds the weights of the best completed trial of the
    search (or none completed yet); else that trial, with a message saying why its weights are
    not there and the ``automl rerun`` command (``rerun``: its start, up to the flags) that makes them."""
    existing = set(optuna.get_all_study_names(storage))
    studies = [optuna.load_study(study_name=n, storage=storage) for n in search_study_names(sf) if n in existing]
    found = _best_completed(studies)
    if found is None:
        return None
    study, best = found
    folder = sf.run_dir / "best_trial"
    info = read_recorded(folder)
    value = info.get("value")
    if isinstance(value, (int, float)) and math.isclose(value, best.values[0], rel_tol=1e-9, abs_tol=1e-12):
        return None  # that trial's weights, or a tie's
    if isinstance(value, (int, float)) and value > best.values[0]:
        why = f"{folder} holds those of trial {info.get('trial_number')}, which did not complete"
    elif NOT_SAVED_ATTR in best.user_attrs:
        why = best.user_attrs[NOT_SAVED_ATTR]
    elif _other_host(best):
        why = f"it ran on {best.user_attrs['worker'].rpartition(':')[0]}: its weights are in that machine's {folder}"
    else:
        why = f"{folder} holds trial {info['trial_number']}'s" if "trial_number" in info else f"{folder} is empty"
    stage = study.study_name.removeprefix(sf.name + ".") if sf.stages else None
    which = f"#{best.number} of stage {stage}" if stage else f"#{best.number}"
    flags = f" --trial {best.number}" + (f" --stage {stage}" if stage else "")
    return MissingWeights(study.study_name, best.number, best.values[0],
                          f"the weights of best trial {which} were not saved ({why}); run `{rerun}{flags}`", info)
