"""From the moment Optuna creates a trial until the objective has recorded its owner.

Optuna creates the trial in ``study.ask`` (inside ``optimize``); the objective's first line
records its owner (user attr ``worker``). In between, SIGINT/SIGTERM are held
(:func:`automl.interrupts.held`, for the whole ``optimize``: the objective lets them in inside its
``try``), and on SQLite the process holds a file lock next to the database, released once the
owner is recorded; :func:`automl.study.recovery.reap_ownerless_trials` explains what the lock
tells another process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from automl import interrupts


def start_lock(storage_url: str) -> Path | None:
    """The lock file of a SQLite storage; None for the others (which other machines may share)."""
    if not storage_url.startswith("sqlite:///"):
        return None
    db = Path(storage_url[len("sqlite:///"):])
    return None if db.name == ":memory:" else db.with_name(f".{db.name}.trial-start.lock")


class TrialStart:
    def __init__(self, lock_path: Path | None):
        self.lock_path = lock_path
        self._lock = FileLock(lock_path) if lock_path is not None else None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        """Around one ``study.optimize(..., n_trials=1)``."""
        if self._lock is not None:
            self._lock.acquire()  # held by another process of this host for milliseconds at most
        try:
            with interrupts.held():
                yield
        finally:
            self.owned()  # the objective never ran (Optuna's ask failed)

    def owned(self) -> None:
        """The objective has recorded the trial's owner."""
        if self._lock is not None and self._lock.is_locked:
            self._lock.release()
