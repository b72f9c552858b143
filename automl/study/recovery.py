"""Getting a study back into shape after crashes, kills and Ctrl-C.

- Trials of a worker that died keep the state RUNNING. Optuna's heartbeat fails them once their
  heartbeat is older than the grace period, and ``RetryHeartbeatStaleTrialCallback`` enqueues a
  retry with the same parameters (bounded by ``storage.max_retries``).
- A worker on *this* host whose process is gone need not wait for the grace period: its trials
  are failed and retried at once (``reap_dead_local_trials``).
- A trial interrupted by SIGINT/SIGTERM ends FAILED (``stop_reason`` "interrupted"); the next
  start retries it through the same callback, so every retry is linked the same way
  (system attr ``failed_trial`` → the first attempt's number; user attr ``retry_of``).
"""

from __future__ import annotations

import copy
import logging
import os
import socket

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from automl.trial.objective import INTERRUPTED

log = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _retried_numbers(study: optuna.Study) -> set[int]:
    done: set[int] = set()
    for t in study.get_trials(deepcopy=False):
        done.update(t.system_attrs.get("retry_history", []))
    return done


def _retry(study: optuna.Study, trial: FrozenTrial, max_retries: int) -> None:
    RetryHeartbeatStaleTrialCallback(max_retry=max_retries)(study, copy.deepcopy(trial))


def reap_dead_local_trials(study: optuna.Study, max_retries: int) -> list[int]:
    """Fail and retry RUNNING trials whose worker ran on this host and no longer exists."""
    host = socket.gethostname()
    reaped = []
    storage = study._storage  # Optuna's own fail_stale_trials works on the storage the same way
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("worker", "")
        h, _, pid = owner.rpartition(":")
        if h != host or not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "stop_reason", "failed: worker process died")
            changed = storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        if changed:
            _retry(study, storage.get_trial(t._trial_id), max_retries)
            reaped.append(t.number)
    return reaped


def requeue_interrupted(study: optuna.Study, max_retries: int) -> list[int]:
    """Retry trials that a signal interrupted, once each."""
    retried = _retried_numbers(study)
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if t.user_attrs.get("stop_reason") == INTERRUPTED and t.number not in retried:
            _retry(study, t, max_retries)
            out.append(t.number)
    return out


def _running_ids(study: optuna.Study) -> set[int]:
    return {t._trial_id for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}


def _note_failures(study: optuna.Study, trial_ids: set[int], numbers: set[int]) -> None:
    """Dashboard notes for trials that ended outside ``optimize`` (its callbacks never saw them):
    those with these ids or numbers."""
    from automl.view.notes import write_trial_note

    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if t._trial_id in trial_ids or t.number in numbers:
            try:
                write_trial_note(study, t)
            except Exception as exc:  # noqa: BLE001 - a missing note is no reason to stop recovering
                log.warning("could not write the note of trial %d: %s: %s", t.number, type(exc).__name__, exc)


def recover(study: optuna.Study, max_retries: int) -> None:
    """Everything above, plus Optuna's heartbeat check (RDB storages only); each trial failed
    here, or retried after an interruption, gets its dashboard note."""
    before = _running_ids(study)
    fail_stale_trials(study)
    reap_dead_local_trials(study, max_retries)
    interrupted = requeue_interrupted(study, max_retries)
    ended = before - _running_ids(study) if before else set()  # finished elsewhere, or failed here
    if ended or interrupted:
        _note_failures(study, ended, set(interrupted))
