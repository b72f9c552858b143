"""Attach report files and summary attributes to a study, for optuna-dashboard.

Files become study artifacts (served from ``runs/<study>/artifacts/``); the ids of this run's
uploads are stored in a user attribute ``<name>_artifacts`` ({file name: artifact id}) so a
note can link the latest ones. Earlier uploads stay in the store (Optuna has no artifact delete
that keeps ``get_all_artifact_meta`` working).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automl.config import StudyFile


def publish(sf: StudyFile, storage: str | None, name: str, files: list[Path],
            user_attrs: dict[str, Any] | None = None) -> str:
    """Upload ``files`` to the study of ``sf`` (created if missing; for a staged search, the latest
    stage begun), set ``user_attrs`` and refresh the study note so the dashboard shows them at
    once; returns the study's name."""
    from automl.study.artifacts import attach_file
    from automl.study.runner import open_study
    from automl.study.stages import current_study_name
    from automl.study.storage import open_storage, resolve_url
    from automl.view.notes import refresh_study_note

    url = resolve_url(sf, storage)
    study = open_study(sf, url, study_name=current_study_name(sf, open_storage(url, sf.storage)))
    ids = {path.name: attach_file(sf.run_dir, study, path) for path in files}
    study.set_user_attr(f"{name}_artifacts", ids)
    for key, value in (user_attrs or {}).items():
        study.set_user_attr(key, value)
    refresh_study_note(study, sf)
    return study.study_name
