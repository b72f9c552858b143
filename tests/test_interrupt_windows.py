"""A signal (or a kill) at the very start of a trial: before the objective's ``try``, inside
Optuna's ``ask``, in sampling, in the latency probe. Each must leave a trial that the resumed
study retries, and the resumed study must reach its exact total with the baseline run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

import automl.trial.objective as objective_module
from automl import interrupts
from automl.config import load_study_file
from automl.space.sample import ResolvedSpace
from automl.study.recovery import retry
from automl.study.runner import prepare, run_search, setup_study
from automl.trial.objective import INTERRUPTED

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _prep(tiny_study, runs_root, **changes):
    path = tiny_study(**{"budget.n_trials": 2, "budget.trial_epochs": 1, "pruner.type": "none", **changes})
    return prepare(load_study_file(path, runs_root=runs_root))


def _assert_resumed(study: optuna.Study, prep, total: int) -> list:
    """Exact total, nothing RUNNING, every FAIL with its reason, the baseline run."""
    trials = study.get_trials()
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    assert len([t for t in trials if t.state in FINISHED]) == total, [(t.number, t.state) for t in trials]
    assert all("stop_reason" in t.user_attrs for t in trials if t.state == TrialState.FAIL)
    baseline = prep.space.checked_baseline()
    ran = [t for t in trials if t.state in FINISHED and t.user_attrs.get("baseline")]
    assert ran and baseline.items() <= ran[0].params.items(), "the baseline never ran"
    return trials


def _interrupt(how: str) -> None:
    if how == "raise":
        raise KeyboardInterrupt
    os.kill(os.getpid(), signal.SIGINT)  # a real signal: Python raises it at its next check
    time.sleep(1.0)


@pytest.mark.parametrize(("window", "how"), [("sampling", "signal"), ("latency probe", "raise")])
def test_an_interrupt_in_sampling_or_the_latency_probe_is_retried(tiny_study, runs_root, monkeypatch, window, how):
    prep = _prep(tiny_study, runs_root)
    fired = []

    def once(real):
        def wrapper(*args, **kwargs):
            if not fired:
                fired.append(True)
                _interrupt(how)
            return real(*args, **kwargs)
        return wrapper

    if window == "sampling":
        monkeypatch.setattr(ResolvedSpace, "sample", once(ResolvedSpace.sample))
    else:
        monkeypatch.setattr(objective_module, "measure_model", once(objective_module.measure_model))
    with pytest.raises(KeyboardInterrupt):
        run_search(prep)
    (first,) = setup_study(prep).get_trials()
    assert first.state == TrialState.FAIL and first.user_attrs["stop_reason"] == INTERRUPTED
    assert first.user_attrs["worker"].endswith(f":{os.getpid()}")  # owned before sampling
    study = run_search(prepare(prep.sf))
    trials = _assert_resumed(study, prep, 2)
    assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].user_attrs["baseline"] is True


def test_a_signal_inside_optunas_ask_is_held_until_the_trial_is_owned(tiny_study, runs_root, monkeypatch):
    """The trial exists (RUNNING) before the objective's first line; a SIGINT there used to leave
    it RUNNING with no owner, and the resumed search waited for it forever."""
    prep = _prep(tiny_study, runs_root)
    real_ask = optuna.study.Study.ask
    fired = []

    def ask(self, *args, **kwargs):
        trial = real_ask(self, *args, **kwargs)
        if not fired:
            fired.append(True)
            _interrupt("signal")
        return trial

    monkeypatch.setattr(optuna.study.Study, "ask", ask)
    with pytest.raises(KeyboardInterrupt):
        run_search(prep)
    (first,) = setup_study(prep).get_trials()
    assert first.state == TrialState.FAIL and first.user_attrs["stop_reason"] == INTERRUPTED
    study = run_search(prepare(prep.sf), timeout_s=30, poll_s=0.1)  # the old code waited here until the timeout
    trials = _assert_resumed(study, prep, 2)
    assert trials[1].user_attrs["baseline"] is True  # the resumed search starts with the baseline


def _orphan_the_baseline(prep) -> optuna.Study:
    """What a process killed (SIGKILL) inside Optuna's ask leaves: the enqueued baseline RUNNING,
    with no owner and no heartbeat."""
    study = setup_study(prep)
    (baseline,) = study.get_trials(states=(TrialState.WAITING,))
    assert study._storage.set_trial_state_values(baseline._trial_id, state=TrialState.RUNNING)
    return study


def test_an_ownerless_trial_on_sqlite_is_retried_at_once(tiny_study, runs_root):
    prep = _prep(tiny_study, runs_root)
    _orphan_the_baseline(prep)
    t0 = time.monotonic()
    study = run_search(prepare(prep.sf), timeout_s=30, poll_s=0.1)
    trials = _assert_resumed(study, prep, 2)
    assert trials[0].state == TrialState.FAIL and "starting the trial" in trials[0].user_attrs["stop_reason"]
    assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].state in FINISHED  # baseline first
    assert time.monotonic() - t0 < 25


def test_an_ownerless_trial_elsewhere_is_retried_after_the_grace_period(tiny_study, runs_root, tmp_path):
    """A journal file (or a database) may be shared with other machines: no lock can tell a dead
    process from a live one there, so the trial is retried once it stayed ownerless for the grace
    period."""
    prep = _prep(tiny_study, runs_root, **{"storage.url": f"journal://{tmp_path / 'study.log'}",
                                           "storage.grace_period": 2})
    _orphan_the_baseline(prep)
    study = run_search(prepare(prep.sf), timeout_s=60, poll_s=0.1)
    trials = _assert_resumed(study, prep, 2)
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["stop_reason"].startswith("failed:")


def test_a_failed_trial_without_a_reason_is_retried_once(tiny_study, runs_root):
    """What older versions left after a signal before the objective's try: FAIL, no stop_reason."""
    prep = _prep(tiny_study, runs_root)
    study = setup_study(prep)
    (baseline,) = study.get_trials(states=(TrialState.WAITING,))
    study._storage.set_trial_state_values(baseline._trial_id, state=TrialState.RUNNING)
    study._storage.set_trial_state_values(baseline._trial_id, state=TrialState.FAIL)
    study = run_search(prepare(prep.sf))
    trials = study.get_trials()
    assert len([t for t in trials if t.state in FINISHED]) == 2
    assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].user_attrs["baseline"] is True
    assert trials[1].state in FINISHED


def test_a_retry_keeps_the_enqueued_parameters_not_the_owner():
    study = optuna.create_study()
    study.enqueue_trial({"x": 1.5}, user_attrs={"baseline": True})
    trial = study.ask()
    trial.set_user_attr("worker", "gone:1")
    trial.set_user_attr("stop_reason", INTERRUPTED)
    study.tell(trial, state=TrialState.FAIL)
    assert retry(study, study.trials[0], max_retries=1)
    again = study.trials[1]
    assert again.state == TrialState.WAITING and again.user_attrs == {"baseline": True}
    assert again.system_attrs["fixed_params"] == {"x": 1.5} and again.system_attrs["failed_trial"] == 0
    assert study.ask().suggest_float("x", 0, 2) == 1.5  # sampling finds the baseline's value again
    assert not retry(study, study.trials[1], max_retries=1)  # once is the limit here


def test_interrupted_trials_are_retried_however_often_they_were():
    """``storage.max_retries`` stops a config that kills its worker every time; an interruption
    is the user's doing, and a baseline interrupted three times must still run."""
    from automl.study.recovery import requeue_interrupted

    study = optuna.create_study()
    for reason in (INTERRUPTED, None):
        trial = study.ask()
        if reason:
            trial.set_user_attr("stop_reason", reason)
        study._storage.set_trial_system_attr(trial._trial_id, "retry_history", [90, 91, 92])
        study.tell(trial, state=TrialState.FAIL)
    assert requeue_interrupted(study, max_retries=2) == [0]  # no reason: limited like a dead worker's


def test_held_signals_land_where_they_are_let_in():
    with pytest.raises(KeyboardInterrupt):
        with interrupts.held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # not raised here
            reached = True
            with interrupts.delivered():
                pytest.fail("the held signal must be raised on entry")
    assert reached
    with pytest.raises(KeyboardInterrupt):  # raised as soon as the hold ends
        with interrupts.held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_signal_later_is_not_held(monkeypatch):
    monkeypatch.setattr(interrupts, "FORCE_AFTER_S", 0.1)
    with pytest.raises(KeyboardInterrupt):
        with interrupts.held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # a storage call that hangs
            pytest.fail("not interrupted")


def test_leftovers_of_dead_processes_are_removed_and_a_cut_swap_undone(tmp_path):
    from automl.atomic import clean_leftovers, owned_tempdir
    from automl.owner import HOST

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".bundle~tmp~{HOST}~{dead.pid}~abc").mkdir()  # a killed write of a bundle
    (tmp_path / f".final-work~tmp~{HOST}~{dead.pid}~x1").mkdir()
    (tmp_path / f".best_trial~old~{HOST}~{dead.pid}").mkdir()  # killed between the swap's renames
    (tmp_path / f".best_trial~old~{HOST}~{dead.pid}" / "weights").write_text("old")
    keep = [f".bundle~tmp~{HOST}~{os.getpid()}~live", f".bundle~tmp~elsewhere~{dead.pid}~abc", "bundle"]
    for name in keep:
        (tmp_path / name).mkdir()
    assert len(clean_leftovers(tmp_path)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*keep, "best_trial"])
    assert (tmp_path / "best_trial" / "weights").read_text() == "old"
    with owned_tempdir(tmp_path, "final-work") as work:
        assert work.parent == tmp_path and f"~{os.getpid()}~" in work.name
    assert not work.exists()


def test_a_signal_between_the_renames_of_a_swap_lands_after_it(tmp_path, monkeypatch):
    from automl import faults
    from automl.atomic import swap_in

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "v").write_text("old")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "v").write_text("new")
    monkeypatch.setattr(faults, "point", lambda name: os.kill(os.getpid(), signal.SIGINT) or time.sleep(0.2))
    with pytest.raises(KeyboardInterrupt):
        with interrupts.held():  # as in a trial's hooks: nested holds pass the signal outwards
            with interrupts.delivered():
                swap_in(tmp_path / "new", tmp_path / "out")
                time.sleep(1)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (tmp_path / "out" / "v").read_text() == "new"
