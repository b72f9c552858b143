"""One bad trial never ends the night: exceptions, NaN and hangs end one trial, with the reason."""

from __future__ import annotations

import datetime as dt
import time

import optuna
import pytest
from optuna.trial import TrialState

import automl.trial.objective as objective_module
from automl.config import load_study_file
from automl.errors import AutoMLError
from automl.study.budget import search_seconds
from automl.study.runner import prepare, run_search
from automl.trial.engine import fit as real_fit
from automl.trial_config import OptimizerSpec


def test_raise_nan_and_hang_each_end_one_trial(tiny_study, runs_root, monkeypatch):
    calls = {"n": 0}

    def faulty_fit(cfg, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk went away")
        if calls["n"] == 3:  # a real divergence: SGD with an absurd learning rate
            cfg = cfg.with_changes(optimizer=OptimizerSpec(name="sgd", lr=1e12, momentum=0.9).model_dump())
        if calls["n"] == 4:
            time.sleep(120)  # hangs inside one call; the alarm must stop it
        return real_fit(cfg, *args, **kwargs)

    monkeypatch.setattr(objective_module, "fit", faulty_fit)
    sf = load_study_file(tiny_study(**{"budget.n_trials": 3, "budget.trial_epochs": 1,
                                       "budget.trial_time_limit": 10}), runs_root=runs_root)
    t0 = time.monotonic()
    study = run_search(prepare(sf))
    assert time.monotonic() - t0 < 120
    trials = study.get_trials()
    reasons = {t.number: t.user_attrs.get("stop_reason", "") for t in trials}
    assert trials[1].state == TrialState.FAIL and "RuntimeError: disk went away" in reasons[1]
    assert trials[2].state == TrialState.PRUNED and reasons[2].startswith("pruned: loss is")
    assert trials[3].state == TrialState.FAIL and "time limit of 10 s" in reasons[3]
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 3


def test_failure_streak_stops_the_search(tiny_study, runs_root, monkeypatch):
    def broken_fit(*args, **kwargs):
        raise ValueError("broken setup")

    monkeypatch.setattr(objective_module, "fit", broken_fit)
    sf = load_study_file(tiny_study(**{"budget.n_trials": 50, "budget.max_consecutive_failures": 3}),
                         runs_root=runs_root)
    with pytest.raises(AutoMLError, match="3 failed trials in a row"):
        run_search(prepare(sf))


def test_out_of_memory_retries_once_at_half_batch(tiny_study, runs_root, monkeypatch):
    seen = []

    def oom_once(cfg, *args, **kwargs):
        seen.append(cfg.batch_size)
        if len(seen) == 1:
            raise torch_oom()
        return real_fit(cfg, *args, **kwargs)

    def torch_oom():
        import torch

        return torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(objective_module, "fit", oom_once)
    sf = load_study_file(tiny_study(**{"budget.n_trials": 1, "budget.trial_epochs": 1}), runs_root=runs_root)
    study = run_search(prepare(sf))
    t = study.get_trials()[0]
    assert t.state == TrialState.COMPLETE and seen == [seen[0], seen[0] // 2]
    assert t.user_attrs["oom_retry"] is True and t.user_attrs["config"]["batch_size"] == seen[0] // 2


def test_search_time_is_the_union_of_trial_intervals():
    study = optuna.create_study()
    t0 = dt.datetime(2026, 1, 1, 0, 0, 0)
    for start, end in ((0, 10), (5, 20), (100, 130)):  # overlap 0-20, gap, then 30 s
        study.add_trial(optuna.trial.FrozenTrial(
            number=0, trial_id=0, state=TrialState.COMPLETE, value=0.1, values=None,
            datetime_start=t0 + dt.timedelta(seconds=start), datetime_complete=t0 + dt.timedelta(seconds=end),
            params={}, distributions={}, user_attrs={}, system_attrs={}, intermediate_values={}))
    assert search_seconds(study) == pytest.approx(50.0)
