"""Find the trained model a path points at: a study file (→ ``runs/<study>/best_trial``), a model
folder (SMP ``save_pretrained`` + ``trial_config.json``) or a bundle (→ its ``model/`` folder)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from automl.config import StudyFile, load_study_file
from automl.errors import ConfigError
from automl.trial.checkpoint import TRIAL_CONFIG_FILE

STUDY_SUFFIXES = {".yaml", ".yml"}


@dataclass
class ModelSource:
    model_dir: Path
    study: StudyFile | None   # set when the path was a study file
    label: str                # a short name for output folders and titles


def is_model_dir(path: Path) -> bool:
    return (path / TRIAL_CONFIG_FILE).is_file()


def resolve_model(path: Path, *, runs_root: Path = Path("runs"), overrides: dict | None = None,
                  storage: str | None = None) -> ModelSource:
    """``storage``: the ``--storage`` override, for a study file (its trials say whether the
    weights in ``best_trial`` are the best trial's)."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in STUDY_SUFFIXES:
        sf = load_study_file(path, overrides=overrides, runs_root=runs_root)
        best = sf.run_dir / "best_trial"
        if is_model_dir(best) or sf.run_dir.is_dir():  # a search ran: are these the best trial's?
            _check_best_weights(sf, path, storage)
        if not is_model_dir(best):
            raise ConfigError(f"{best}: no best-trial weights yet; `automl search {path}` keeps the best "
                              "trial's model there")
        return ModelSource(best, sf, sf.name)
    if path.is_dir() and is_model_dir(path):
        label = path.parent.name if path.name in ("best_trial", "model") else path.name
        return ModelSource(path, None, label)
    if path.is_dir() and is_model_dir(path / "model"):
        return ModelSource(path / "model", None, path.name)
    raise ConfigError(f"{path}: not a study file (*.yaml), a model folder ({TRIAL_CONFIG_FILE} + SMP weights) "
                      "or a bundle (with such a model/ folder)")


def _check_best_weights(sf: StudyFile, path: Path, storage: str | None) -> None:
    """Refuse weights in ``best_trial`` that are not the best trial's (its save failed): results
    under the study's name must come from the model the study says is best."""
    from automl.study.checkpoints import missing_best_weights
    from automl.study.storage import open_storage, resolve_url
    from automl.view.summary import command_flags

    url = resolve_url(sf, storage)
    missing = missing_best_weights(sf, open_storage(url, sf.storage), f"automl rerun {shlex.quote(str(path))}{command_flags(sf, url)}")
    if missing is not None:
        raise ConfigError(missing.message)
