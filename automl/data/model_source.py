"""Find the trained model a path points at: a study file (→ ``runs/<study>/best_trial``), a model
folder (SMP ``save_pretrained`` + ``trial_config.json``) or a bundle (→ its ``model/`` folder)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from automl.errors import ConfigError
from automl.study.config import StudyFile, load_study_file
from automl.trial.checkpoint import TRIAL_CONFIG_FILE

STUDY_SUFFIXES = {".yaml", ".yml"}


@dataclass
class ModelSource:
    model_dir: Path
    study: StudyFile | None   # set when the path was a study file
    label: str                # a short name for output folders and titles


def is_model_dir(path: Path) -> bool:
    return (path / TRIAL_CONFIG_FILE).is_file()


def resolve_model(path: Path, *, runs_root: Path = Path("runs"), overrides: dict | None = None) -> ModelSource:
    path = Path(path)
    if path.is_file() and path.suffix.lower() in STUDY_SUFFIXES:
        sf = load_study_file(path, overrides=overrides, runs_root=runs_root)
        best = sf.run_dir / "best_trial"
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
