"""Storage URLs: defaults, secrets from the environment, masking, heartbeat and retries.

- ``sqlite:///runs/<study>/study.db`` by default (one machine, a few workers);
- ``postgresql+psycopg://user:pass@host/db`` or ``mysql+pymysql://...`` to scale out;
- ``journal:///shared/disk/study.log`` for Optuna's file journal on a shared disk;
- ``env:VAR`` reads the URL from environment variable VAR, so no password sits in a file.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage

from automl.errors import ConfigError
from automl.study.config import StorageSection, StudyFile

log = logging.getLogger(__name__)

# A password may hold "/" (SQLAlchemy takes everything up to the "@"); only "@" must be %-encoded.
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*)(?::(?P<pw>[^@\s]*))?@", re.I)


_FILE_URL = re.compile(r"^(?P<scheme>sqlite:///|journal://)(?P<path>/.+)$")


def _shown_path(path: str) -> str:
    """An absolute path as logs show it: relative to the working directory when under it, else
    only its last three parts (no home folder or user name)."""
    p = Path(path)
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(Path("…", *p.parts[-3:]))


def mask_url(url: str) -> str:
    """A storage URL fit for logs: the password hidden (``user:***@host``), an absolute file path
    shortened; the rest left readable."""
    m = _FILE_URL.match(url)
    if m:
        return m["scheme"] + _shown_path(m["path"])
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}{':***' if m['pw'] is not None else ''}@", url)


def resolve_url(sf: StudyFile, override: str | None = None) -> str:
    url = override or sf.storage.url
    if url is None:
        return f"sqlite:///{sf.run_dir / 'study.db'}"
    if url.startswith("env:"):
        var = url[4:]
        if var not in os.environ:
            raise ConfigError(f"storage: environment variable {var} is not set")
        return os.environ[var]
    return url


def open_storage(url: str, opts: StorageSection) -> optuna.storages.BaseStorage:
    """An Optuna storage with heartbeat, so trials of dead workers are failed and retried.

    Optuna's JournalStorage has no heartbeat: on a journal file only workers of this host are
    reaped when they die (by pid, ``recovery.reap_dead_local_trials``). A trial of a dead worker on
    another machine stays RUNNING, so for several machines use PostgreSQL or MySQL.
    """
    if url.startswith("journal://"):
        path = Path(url[len("journal://"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict = {}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        # Several local workers share one file: wait on locks instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    attempt = 0
    while True:
        try:
            return RDBStorage(
                url, engine_kwargs=engine_kwargs,
                heartbeat_interval=opts.heartbeat_interval, grace_period=opts.grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=opts.max_retries),
            )
        except Exception as exc:  # noqa: BLE001 - connection errors carry the URL; never echo it
            if attempt < SCHEMA_RACE_RETRIES and _schema_race(exc):
                # Workers started together on an empty database all create Optuna's tables; the
                # losers get "table already exists" (MariaDB 1050) or a duplicate pg_type row.
                # The winner's schema is there a moment later: open it again.
                log.info("storage %s: another worker is creating the schema; retrying", mask_url(url))
                time.sleep(0.5 + attempt)
                attempt += 1
                continue
            raise ConfigError(f"storage {mask_url(url)}: cannot open ({type(exc).__name__}: "
                              f"{mask_url(str(exc).splitlines()[0])})") from None


SCHEMA_RACE_RETRIES = 4


def _schema_race(exc: Exception) -> bool:
    text = str(exc).lower()
    return "already exists" in text or "duplicate key" in text or "duplicate entry" in text
