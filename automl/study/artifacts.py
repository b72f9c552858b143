"""The study's artifact store (``runs/<study>/artifacts/``), which optuna-dashboard serves.

Start the dashboard with ``--artifact-dir runs/<study>/artifacts`` (``automl dashboard`` does).
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact


def artifact_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "artifacts"


def artifact_store(run_dir: Path) -> FileSystemArtifactStore:
    path = artifact_dir(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def attach_file(run_dir: Path, study_or_trial: optuna.Study | optuna.Trial | optuna.trial.FrozenTrial,
                file_path: Path, *, storage: optuna.storages.BaseStorage | None = None) -> str:
    """Upload a file as an artifact of a study or trial; returns the artifact id."""
    kwargs = {"storage": storage} if storage is not None else {}
    return upload_artifact(artifact_store=artifact_store(run_dir), file_path=str(file_path),
                           study_or_trial=study_or_trial, **kwargs)
