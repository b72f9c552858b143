"""Keep the weights of the best completed trial so far under ``runs/<study>/best_trial/``.

``automl inspect`` and the dashboard use them; the final stage retrains from the config anyway.
Several workers may finish trials at once: under a file lock, the folder is replaced (atomically)
only when the new value beats the one recorded inside it. The folder's ``trial_config.json``
names the trial and its value, and lands with the weights (one rename): it never names a trial
whose weights are not there.

A save can fail (a full disk). The trial then carries the reason (user attr
``weights_not_saved``), this worker keeps the weights in memory and tries again when its next
trial completes, and :func:`missing_best_weights` tells the summary and ``automl inspect`` that
the best trial's weights are not in the folder, instead of letting them use older ones.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import socket
from dataclasses import dataclass
from pathlib import Path

import optuna
from filelock import FileLock
from optuna.trial import FrozenTrial, TrialState
from torch import nn

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
        self.unsaved: _Unsaved | None = None

    def recorded_value(self) -> float:
        try:
            return float(read_recorded(self.dir)["value"])
        except (KeyError, TypeError, ValueError):
            return float("-inf")

    def _current(self, study: optuna.Study) -> float:
        """The recorded value, unless the folder holds a trial of this study that failed after its
        weights were saved (its storage write failed, and a resume failed it): any completed
        trial beats that. A RUNNING one may be another worker's, about to complete."""
        info = read_recorded(self.dir)
        if info.get("study_name") == study.study_name:
            states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
            if states.get(info.get("trial_number")) == TrialState.FAIL:
                return float("-inf")
        return self.recorded_value()

    def _lock(self) -> FileLock:
        # read-compare-write as one step: two workers finishing together must not let the worse
        # model land last
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(self.dir.parent / ".best_trial.lock", timeout=300)

    def restore(self, model: nn.Module, cfg: TrialConfig, missing: MissingWeights) -> bool:
        """Put a retrained model of the trial whose weights are missing in the folder (``automl
        rerun``), unless a better one landed meanwhile. The recorded value stays the trial's."""
        with self._lock():
            # a better trial that landed since the check stays; a folder unchanged since the check
            # (e.g. holding a trial that did not complete) is replaced
            if missing.value <= self.recorded_value() and read_recorded(self.dir) != missing.found:
                return False
            save_model(model, cfg, self.dir, extra={"trial_number": missing.trial_number, "value": missing.value,
                                                    "study_name": missing.study_name, "retrained": True})
            return True

    def __call__(self, trial: optuna.Trial, cfg: TrialConfig, result: FitResult, value: float) -> None:
        with self._lock():
            current = self._current(trial.study)
            pending = self.unsaved
            if pending is not None and pending.extra["value"] > max(current, value):
                # an earlier best that could not be written: try again, keep this trial's aside
                if self._save(pending.model, pending.cfg, pending.extra, trial=None):
                    self.unsaved = None
                return
            self.unsaved = None  # this trial is as good (or nothing is pending)
            if value > current:
                extra = {"trial_number": trial.number, "value": value, "study_name": trial.study.study_name}
                self._save(result.model, cfg, extra, trial=trial)

    def _save(self, model: nn.Module, cfg: TrialConfig, extra: dict, trial: optuna.Trial | None) -> bool:
        try:
            save_model(model, cfg, self.dir, extra=extra)
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
