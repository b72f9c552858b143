"""Never worse than the default: the baseline is the incumbent, its seed probe measures the noise,
and a challenger replaces it only by leading by more than that noise."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from automl.config import load_study_file
from automl.final.report import _selection_lines
from automl.final.source import pick_trial, search_summary
from automl.study.budget import trials_since_best
from automl.study.runner import prepare, run_search, setup_study
from automl.study.selection import NOISE_FLOOR, UNMEASURED_MARGIN, decide, select_trial
from automl.view.status import study_status

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_a_lead_within_the_seed_noise_keeps_the_incumbent():
    # seeds 0.60 and 0.62: mean 0.61, margin 1.64 * 0.866 * 0.02 = 0.0284
    kept = decide([0.60, 0.62], 0.63, seed_diff=0.02)
    assert not kept.switch and kept.margin == pytest.approx(0.0284, abs=1e-4) and kept.lead == pytest.approx(0.02)
    assert "within the margin" in kept.why
    assert decide([0.60, 0.62], 0.64, seed_diff=0.02).switch
    # two seeds that agree by chance do not shrink the margin below the floor
    assert decide([0.60, 0.60], 0.60 + NOISE_FLOOR * 0.9, seed_diff=0.0).switch is False
    # without a finished probe the noise is not measured: a stated margin
    assert decide([0.60], 0.60 + UNMEASURED_MARGIN * 0.9, seed_diff=None).switch is False
    assert decide([0.60], 0.60 + UNMEASURED_MARGIN * 1.1, seed_diff=None).switch is True
    assert decide([0.60, 0.62], None, seed_diff=0.02).switch is False


def _trial(value: float, **attrs):
    return create_trial(value=value, params={"x": value}, distributions={"x": FloatDistribution(0, 1)},
                        user_attrs=attrs)


def _study(*values_attrs) -> optuna.Study:
    study = optuna.create_study(direction="maximize", study_name="tiny")  # tiny_study's name
    for value, attrs in values_attrs:
        study.add_trial(_trial(value, **attrs))
    return study


def test_selection_keeps_the_baseline_unless_a_challenger_clears_the_noise(tiny_study, runs_root):
    sf = load_study_file(tiny_study(), runs_root=runs_root)
    base, probe = (0.60, {"baseline": True}), (0.62, {"seed_probe": True})
    assert select_trial(_study(base, probe, (0.63, {})), sf).number == 0     # within noise: the baseline
    assert select_trial(_study(base, probe, (0.65, {})), sf).number == 2     # beyond it: the challenger
    # the probe is never a candidate, even when it scores best
    assert select_trial(_study(base, (0.70, {"seed_probe": True}), (0.61, {})), sf).number == 0
    # switched off: plain best, the probe still excluded
    off = load_study_file(tiny_study(**{"selection.incumbent": False}), runs_root=runs_root)
    assert select_trial(_study(base, probe, (0.63, {})), off).number == 2


def test_the_decision_is_recorded_by_the_final_and_shown_by_status(tiny_study, runs_root):
    sf = load_study_file(tiny_study(), runs_root=runs_root)
    study = _study((0.60, {"baseline": True}), (0.62, {"seed_probe": True}), (0.63, {}))
    assert pick_trial(study, sf).number == 0
    record = study.user_attrs["selection"]
    assert record["decision"] == "incumbent" and record["incumbent"]["mean"] == 0.61
    assert record["noise"]["seed_diff"] == 0.02 and record["challenger"] == {"trial": 2, "value": 0.63, "lead": 0.02}
    summary = search_summary(study, sf, study.trials[0])  # what report.md's Selection paragraph reads
    assert summary["selection"] == record and summary["retrained_trial"]["selected"]
    assert "→ trial #0 (incumbent). The challenger leads by +0.0200, within the margin 0.0284" in \
        "\n".join(_selection_lines(record))
    rows = dict(study_status(study, sf, 3, None).data)
    assert rows["seed probe"].startswith("#1") and "0.6200" in rows["seed probe"]
    assert "→ trial #0 (incumbent)" in rows["selection"] and "margin 0.0284" in rows["selection"]


def test_patience_does_not_count_the_probe():
    study = _study((0.60, {"baseline": True}), (0.50, {"seed_probe": True}))
    assert trials_since_best(study) == 0


def test_probe_enqueued_once_never_pruned_never_selected(tiny_study, runs_root, monkeypatch):
    sf = load_study_file(tiny_study(**{"budget.n_trials": 2, "budget.trial_epochs": 2}), runs_root=runs_root)
    prep = prepare(sf)
    study = setup_study(prep)
    # a pruner that prunes everything it is asked about
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: True)
    run_search(prep, study)
    base, probe = study.get_trials()
    assert base.user_attrs["baseline"] and probe.user_attrs["seed_probe"]
    # all the baseline's params, those the sampler drew too; another seed
    assert probe.params == base.params and probe.user_attrs["seed"] != base.user_attrs["seed"]
    assert base.state == TrialState.PRUNED and probe.state == TrialState.COMPLETE
    with pytest.raises(Exception, match="no completed feasible trial"):
        select_trial(study, sf)
    setup_study(prep)                                               # resumed
    setup_study(prep, worker_index=1, enqueue_baseline=False)       # another worker
    assert len(study.get_trials()) == 2


def test_a_search_killed_before_the_probe_was_enqueued_gets_it_on_resume(tiny_study, runs_root):
    from automl.study.runner import enqueue_seed_probe

    sf = load_study_file(tiny_study(), runs_root=runs_root)
    study = _study((0.60, {"baseline": True}), (0.55, {}))
    enqueue_seed_probe(study, sf, 2)       # the budget is spent: it could never run
    assert len(study.get_trials()) == 2
    enqueue_seed_probe(study, sf, 3)
    enqueue_seed_probe(study, sf, 3)
    probes = [t for t in study.get_trials() if t.user_attrs.get("seed_probe")]
    assert len(probes) == 1 and probes[0].state == TrialState.WAITING and probes[0].system_attrs["fixed_params"] == {"x": 0.60}
