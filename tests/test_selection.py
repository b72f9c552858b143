"""Which trial the morning view and the final stage take, on hand-built studies (no training)."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from automl.config import load_study_file
from automl.errors import AutoMLError
from automl.study.selection import pareto_front, select_trial
from automl.view.notes import compute_importances

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _trial(values, latency_ms, params_m, **constraints):
    t = create_trial(values=values, user_attrs={"latency_ms": latency_ms, "params_m": params_m})
    if constraints:
        t.system_attrs["constraints"] = list(constraints.values())
    return t


def test_best_under_limit_looks_past_the_front_of_another_objective(tiny_study, runs_root):
    # objectives mIoU and params; the limit is on latency, which the front does not see
    sf = load_study_file(tiny_study(**{"objectives": ["val_miou", "params_m"],
                                       "pareto_pick": {"rule": "best_under_limit", "max_latency_ms": 20}}),
                         runs_root=runs_root)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(_trial([0.70, 2.0], latency_ms=50, params_m=2.0))   # on the front, too slow
    study.add_trial(_trial([0.60, 3.0], latency_ms=10, params_m=3.0))   # dominated by the first, fast enough
    study.add_trial(_trial([0.50, 1.0], latency_ms=30, params_m=1.0))   # on the front, too slow
    assert {t.values[0] for t in pareto_front(study, sf)} == {0.70, 0.50}
    assert select_trial(study, sf).values[0] == 0.60
    sf.pareto_pick.max_latency_ms = 5
    with pytest.raises(AutoMLError, match="under the given limit"):
        select_trial(study, sf)


def test_current_limits_rule_out_trials_run_before_them(tiny_study, runs_root):
    # the better trial ran before max_params_m was set: Optuna has no constraint values for it
    sf = load_study_file(tiny_study(**{"constraints.max_params_m": 3.0}), runs_root=runs_root)
    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial([0.80], latency_ms=10, params_m=11.0))
    study.add_trial(_trial([0.60], latency_ms=10, params_m=2.0))
    assert study.best_trial.values[0] == 0.80      # Optuna's own best ignores the new limit
    assert select_trial(study, sf).values[0] == 0.60


def test_importances_name_what_makes_the_miou_high(tiny_study, runs_root):
    """PED-ANOVA reads a target as "lower is better": the mIoU must go in negated. Here ``good``
    decides which trials score high, while ``bad`` only orders the low scores, so importances for
    the wrong direction would rank ``bad`` first."""
    rng = random.Random(0)
    study = optuna.create_study(direction="maximize")
    dist = {"good": FloatDistribution(0, 1), "bad": FloatDistribution(0, 1)}
    for _ in range(120):
        good, bad = rng.random(), rng.random()
        value = 0.9 + 0.05 * rng.random() if good > 0.85 else 0.5 * bad
        study.add_trial(create_trial(value=value, params={"good": good, "bad": bad}, distributions=dist))
    imp = compute_importances(study)
    assert imp is not None and imp.values["good"] > imp.values["bad"], imp.values
