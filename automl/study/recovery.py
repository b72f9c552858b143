"""Getting a study back into shape after crashes, kills and Ctrl-C.

Every trial records its owner (user attr ``worker``: ``host:pid``) as the objective's first
step; SIGINT/SIGTERM are held until then (:mod:`automl.interrupts`). A RUNNING trial is dead when:

- its owner ran on *this* host and is gone: failed and retried at once;
- its owner ran elsewhere and its heartbeat is older than the grace period (RDB storages):
  failed, with a reason, and retried; a journal file has no heartbeat, so such a trial stays
  RUNNING (``automl worker`` says so);
- it has no owner: its process died in the instant between Optuna creating the trial and the
  objective's first line (SIGKILL, a crash), see :func:`reap_ownerless_trials`.

A trial that ended FAILED by a signal (``stop_reason`` "interrupted"), or with no reason at all
(older versions failed a trial interrupted before the objective's ``try`` that way), is retried
once. ``storage.max_retries`` limits the retries of trials whose process died while they ran (a
config that runs out of memory kills its worker every time), not of interrupted ones. Every retry is a new WAITING trial with the same parameters (an enqueued trial's fixed
parameters included: a retried baseline is the baseline again), linked the same way as Optuna's
heartbeat retries: system attr ``failed_trial`` → the first attempt's number; user attr
``retry_of`` once it runs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Iterable

import optuna
from filelock import FileLock, Timeout
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from automl.owner import dead_here
from automl.trial.objective import INTERRUPTED

Callback = Callable[[optuna.Study, FrozenTrial], None]
log = logging.getLogger(__name__)

DIED = "failed: worker process died"
STALE = "failed: worker stopped responding (no heartbeat within the grace period)"
UNOWNED = "failed: worker process died while starting the trial"
# What an enqueued trial carries into its retries; the rest of its user attrs belong to one attempt
# (its owner above all: a retry that carried its dead owner's pid could be reaped while it starts).
ENQUEUED_ATTRS = ("baseline", "portfolio", "seed_probe")


def retry(study: optuna.Study, trial: FrozenTrial, max_retries: int | None) -> bool:
    """Enqueue a retry of a failed trial, unless it was retried ``max_retries`` times already
    (None: no limit)."""
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if max_retries is not None and len(history) > max_retries:
        return False
    system_attrs = {**trial.system_attrs, "failed_trial": trial.system_attrs.get("failed_trial", trial.number),
                    "retry_history": history}
    study.add_trial(optuna.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={k: v for k, v in trial.user_attrs.items() if k in ENQUEUED_ATTRS}, system_attrs=system_attrs))
    return True


def _fail_and_retry(study: optuna.Study, trial: FrozenTrial, reason: str, max_retries: int | None) -> bool:
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "stop_reason", reason)
        changed = storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # another process got there first (or the trial ended meanwhile)
    if changed:
        retry(study, storage.get_trial(trial._trial_id), max_retries)
    return changed


def _owner(trial: FrozenTrial) -> tuple[str, int] | None:
    host, _, pid = trial.user_attrs.get("worker", "").rpartition(":")
    return (host, int(pid)) if host and pid.isdigit() else None


def reap_dead_local_trials(study: optuna.Study, max_retries: int) -> list[int]:
    """Fail and retry RUNNING trials whose worker ran on this host and no longer exists."""
    reaped = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = _owner(t)
        if owner is not None and dead_here(*owner) and _fail_and_retry(study, t, DIED, max_retries):
            reaped.append(t.number)
    return reaped


def reap_stale_trials(study: optuna.Study, max_retries: int) -> list[int]:
    """Optuna's ``fail_stale_trials``, with a ``stop_reason`` written before the trial fails (a
    FAILED trial's attrs can no longer change) and :func:`retry`'s retries."""
    storage = study._storage
    if not isinstance(storage, BaseHeartbeat) or not is_heartbeat_enabled(storage):
        return []
    reaped = []
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        trial = storage.get_trial(trial_id)
        if _fail_and_retry(study, trial, STALE, max_retries):
            reaped.append(trial.number)
    return reaped


def _ownerless(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if _owner(t) is None]


# (study id, trial id) → when this process first saw the trial RUNNING without an owner
_ownerless_since: dict[tuple[int, int], float] = {}


def _ownerless_for(study: optuna.Study, grace_s: float) -> list[FrozenTrial]:
    """Trials this process has seen without an owner for longer than ``grace_s``."""
    now = time.monotonic()
    seen = {(study._study_id, t._trial_id): t for t in _ownerless(study)}
    for key in [k for k in _ownerless_since if k[0] == study._study_id and k not in seen]:
        del _ownerless_since[key]
    return [t for key, t in seen.items() if now - _ownerless_since.setdefault(key, now) > grace_s]


def reap_ownerless_trials(study: optuna.Study, start_lock: Path | None, grace_s: float) -> list[int]:
    """Fail and retry RUNNING trials without an owner whose process is certainly gone.

    Such a trial's process died between Optuna creating it and the objective's first line, or is
    in that instant now (milliseconds). Which, is decided without comparing clocks:

    - SQLite serves one machine: a process creating a trial holds ``start_lock`` (a file lock,
      which the kernel releases when the process dies) until it has recorded the owner. Holding
      the lock, this process knows no live process is in that instant, and no new trial can
      appear: every ownerless trial it sees is dead and is retried at once (a resumed study runs
      its baseline first, not after a random draw);
    - other storages may be shared with other machines, where a lock file says nothing, a trial's
      ``datetime_start`` is that machine's naive local time (time zones, drift), and no heartbeat
      has started yet: a trial this process has seen without an owner for longer than
      ``grace_s`` (the heartbeat grace period) is dead.
    """
    # Nothing of the trial ran: it cannot be what killed its process (as a config that runs out of
    # memory can), so its retries are not limited.
    if start_lock is None:
        dead = _ownerless_for(study, grace_s)
        return [t.number for t in dead if _fail_and_retry(study, t, UNOWNED, None)]
    lock = FileLock(start_lock)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return []  # a process of this host is starting a trial: look again next time
    try:
        return [t.number for t in _ownerless(study) if _fail_and_retry(study, t, UNOWNED, None)]
    finally:
        lock.release()


def _retried_numbers(study: optuna.Study) -> set[int]:
    done: set[int] = set()
    for t in study.get_trials(deepcopy=False):
        done.update(t.system_attrs.get("retry_history", []))
    return done


def requeue_interrupted(study: optuna.Study, max_retries: int) -> list[int]:
    """Retry, once each, failed trials that a signal interrupted or that ended with no reason.

    An interruption is the user's doing, not the trial's: its retries are not limited (a baseline
    interrupted three times must still run). A trial that ended with no reason is limited like a
    dead worker's, as nothing says what ended it."""
    retried = _retried_numbers(study)
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        reason = t.user_attrs.get("stop_reason")
        if reason in (INTERRUPTED, None) and t.number not in retried:
            if retry(study, t, None if reason == INTERRUPTED else max_retries):
                out.append(t.number)
    return out


def _running_ids(study: optuna.Study) -> set[int]:
    return {t._trial_id for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}


def _tell_callbacks(study: optuna.Study, trial_ids: set[int], numbers: set[int], callbacks: Iterable[Callback]) -> None:
    """Trials that ended outside ``optimize`` (its callbacks never saw them), those with these ids
    or numbers, go to ``callbacks`` as if ``optimize`` had ended them (e.g. their dashboard note)."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if t._trial_id in trial_ids or t.number in numbers:
            for callback in callbacks:
                try:
                    callback(study, t)
                except Exception as exc:  # noqa: BLE001 - a missing note is no reason to stop recovering
                    log.warning("after trial %d ended: %s: %s", t.number, type(exc).__name__, exc)


def recover(study: optuna.Study, max_retries: int, *, start_lock: Path | None = None,
            ownerless_grace_s: float = 120.0, callbacks: Iterable[Callback] = ()) -> None:
    """Everything above; each trial failed here, or retried after an interruption, goes to
    ``callbacks`` (Optuna's ``(study, trial)``). ``start_lock``: see :func:`reap_ownerless_trials`
    (SQLite only)."""
    before = _running_ids(study)
    reaped = [*reap_dead_local_trials(study, max_retries), *reap_stale_trials(study, max_retries),
              *reap_ownerless_trials(study, start_lock, ownerless_grace_s)]
    if reaped:
        log.info("trial(s) %s: their worker is gone; retried", ", ".join(map(str, sorted(reaped))))
    interrupted = requeue_interrupted(study, max_retries)
    ended = before - _running_ids(study) if before else set()  # finished elsewhere, or failed here
    if ended or interrupted:
        _tell_callbacks(study, ended, set(interrupted), list(callbacks))
