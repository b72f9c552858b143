"""A SIGTERM whose KeyboardInterrupt something swallowed still stops the search at the next safe point."""

from __future__ import annotations

import pytest

from automl import interrupts
from automl.cli import _raise_interrupt
from automl.config import load_study_file
from automl.study.runner import prepare, run_search


def test_a_swallowed_stop_is_raised_again_before_the_next_trial(tiny_study, runs_root):
    sf = load_study_file(tiny_study(**{"budget.n_trials": 2, "budget.trial_epochs": 1}), runs_root=runs_root)
    prep = prepare(sf)
    try:
        _raise_interrupt(None, None)  # what the CLI's SIGTERM handler does
    except KeyboardInterrupt:
        pass  # e.g. a library's broad except, or a thread pool's shutdown
    with pytest.raises(KeyboardInterrupt):
        run_search(prep)
    assert not prep.sf.run_dir.joinpath("best_trial").exists()  # no trial started
    interrupts.raise_if_requested()  # acted on once, then forgotten: no second raise
