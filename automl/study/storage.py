"""Storage URLs: defaults, secrets from the environment, masking, heartbeat and retries.

- ``sqlite:///runs/<study>/study.db`` by default (one machine, a few workers);
- ``postgresql+psycopg://user:pass@host/db`` or ``mysql+pymysql://...`` to scale out;
- ``journal:///shared/disk/study.log`` for Optuna's file journal on a shared disk;
- ``env:VAR`` reads the URL from environment variable VAR, so no password sits in a file.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import time
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage

from automl.config import StorageSection, StudyFile
from automl.errors import ConfigError, StorageError

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


def storage_arg(url: str) -> str:
    """The URL as a ``--storage`` value in a command the user may copy: as it is, unless it holds a
    password; then ``env:VAR`` if an environment variable holds the URL, else the URL masked."""
    m = _CREDENTIALS.search(url)
    if m is None or m["pw"] is None:
        return url
    var = next((k for k, v in os.environ.items() if v == url), None)
    return f"env:{var}" if var else mask_url(url)


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
        _remember(url)
        path = Path(url[len("journal://"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    _remember(url)
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


# What a failed write looks like to the user. Optuna wraps every SQLAlchemy error of a commit in a
# StorageInternalError that blames "invalid data in the commit, e.g. exceeding max length", whatever
# the cause (a full disk, a read-only file, a lost server); the CLI turns it into one line that says
# what failed, where, and how much space is left. The exception does not say which storage it came
# from: the URLs this process opened are kept for that (newest last).
_opened: list[str] = []


def _remember(url: str) -> None:
    if url in _opened:
        _opened.remove(url)
    _opened.append(url)

# OSErrors that mean "this disk cannot take the write", not a bug.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


def _file_of(url: str) -> Path | None:
    for scheme in ("sqlite:///", "journal://"):
        if url.startswith(scheme):
            return Path(url[len(scheme):])
    return None


def free_space(folder: Path) -> str:
    """``'12.3 MB free in runs/x'`` for ``folder`` (or its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return f"free space in {_shown_path(str(folder))} unknown"
    amount = f"{free / 1e9:.1f} GB" if free >= 1e10 else f"{free / 1e6:.1f} MB"
    return f"{amount} free in {_shown_path(str(folder))}"


def _chain(exc: BaseException | None):
    """``exc`` and the exceptions it was raised from or while handling. Optuna's own clean-up can
    turn a failed write into another error: after a failed ``tell`` it raises AssertionError
    ("Should not reach.") while handling the StorageInternalError."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _storage_cause(exc: BaseException) -> BaseException | None:
    """The database error behind ``exc`` when a storage write failed along its chain, else None."""
    import sqlalchemy.exc

    for e in _chain(exc):
        if isinstance(e, optuna.exceptions.StorageInternalError):
            e = e.__cause__ or e
        elif not isinstance(e, sqlalchemy.exc.SQLAlchemyError):
            continue
        return getattr(e, "orig", None) or e  # the driver's own error (sqlite3.OperationalError ...)
    return None


def _disk_error(exc: BaseException) -> OSError | None:
    return next((e for e in _chain(exc) if isinstance(e, OSError) and e.errno in _DISK_ERRNOS), None)


def is_write_failure(exc: BaseException) -> bool:
    return _storage_cause(exc) is not None or _disk_error(exc) is not None


def write_failure(exc: BaseException) -> StorageError | None:
    """One clear StorageError for a failed storage write or a full (or read-only) disk; None when
    ``exc`` is neither. The caller keeps ``exc`` as its ``__cause__``."""
    cause = _storage_cause(exc)
    if cause is None:
        exc = _disk_error(exc)
        if exc is None:
            return None
        where = Path(exc.filename) if exc.filename else Path.cwd()
        return StorageError(f"cannot write {_shown_path(str(where.absolute()))} ({exc.strerror}); "
                            f"{free_space(where.parent)}. Free some space (or make it writable), then run the "
                            "same command to resume")
    text = str(cause).strip().splitlines()
    why = f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__
    url = _opened[-1] if _opened else None
    path = _file_of(url) if url else None
    what = f"storage {mask_url(url)}" if url else "the study's storage"
    if path is not None:
        how = f"; {free_space(path.parent)}. The write was rolled back: free some space (or make the file writable)"
    else:
        how = ". The write was rolled back: check the database server (disk, permissions, connection)"
    return StorageError(f"{what}: cannot write ({mask_url(why)}){how}, then run the same command to resume")
