"""Accuracy against speed and size: constraints, Pareto mode, staged search (each across a restart)."""

from __future__ import annotations

import copy

import pytest
from optuna.trial import TrialState

from automl.config import load_study_file
from automl.study.runner import final_study, prepare, run_all, run_search, setup_study
from automl.study.selection import pareto_front, select_trial
from automl.view.dashboard_hooks import morning_view
from tests.conftest import TINY_SPACE

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _space(**model) -> dict:
    space = copy.deepcopy(TINY_SPACE)
    space["model"].update(model)
    return space


def test_constraint_rules_out_the_larger_models(tiny_study, runs_root):
    space = _space(architectures=["Unet", "Linknet"], encoders=["resnet18", "tu-mobilenetv3_small_100"],
                   encoder_depth={"choices": [3, 5]}, aux_head=False)
    path = tiny_study(space=space, **{"budget.n_trials": 3, "budget.trial_epochs": 1,
                                      "constraints.max_params_m": 3.0})
    prep = prepare(load_study_file(path, runs_root=runs_root))
    assert all("resnet18" not in p for p in prep.space.pairs)  # resnet18 pairs: > 11 M params, never sampled
    study = setup_study(prep)
    # Unet-mobilenetv3 is 2.2 M params at depth 3 but 3.6 M at depth 5: stopped before training.
    study.enqueue_trial({"model": "Unet/tu-mobilenetv3_small_100", "encoder_depth": 5})
    run_search(prep, study)
    trials = study.get_trials()
    infeasible = [t for t in trials if t.user_attrs.get("feasible") is False]
    assert infeasible and all(t.state == TrialState.PRUNED and t.user_attrs["epochs_run"] == 0 for t in infeasible)
    assert infeasible[0].user_attrs["stop_reason"].startswith("infeasible before training: params 3.59 M > 3 M")
    assert infeasible[0].constraints["params_m"] == pytest.approx(infeasible[0].user_attrs["constraint_params_m"],
                                                                  abs=1e-4)
    best = select_trial(study, prep.sf)
    assert best.user_attrs["params_m"] <= 3.0 and best.user_attrs["feasible"] is True
    # after a restart with a larger total, the rule still holds
    prep2 = prepare(load_study_file(path, runs_root=runs_root).model_copy(
        update={"budget": prep.sf.budget.model_copy(update={"n_trials": 5})}))
    again = run_search(prep2)
    assert len(again.get_trials(states=FINISHED)) == 5
    assert select_trial(again, prep2.sf).user_attrs["params_m"] <= 3.0
    assert all(t.user_attrs["params_m"] <= 3.0 for t in again.get_trials(states=(TrialState.COMPLETE,)))


def test_constraints_added_on_resume_rule_out_earlier_trials(tiny_study, runs_root):
    """A study first run without constraints, then resumed with one: Optuna counts the earlier
    trials as feasible (they have no constraint values), the final stage must not; and the model
    list sampled from must not change within the study (Optuna would fail every trial)."""
    space = _space(architectures=["Unet"], encoders=["resnet18", "tu-mobilenetv3_small_100"], encoder_depth=3,
                   aux_head=False)
    path = tiny_study(space=space, **{"budget.n_trials": 2, "budget.trial_epochs": 1})
    prep = prepare(load_study_file(path, runs_root=runs_root))
    study = setup_study(prep)
    study.enqueue_trial({"model": "Unet/resnet18"})
    study.enqueue_trial({"model": "Unet/tu-mobilenetv3_small_100"})
    run_search(prep, study)
    big = next(t for t in study.trials if t.params["model"] == "Unet/resnet18")
    assert big.state == TrialState.COMPLETE and big.user_attrs["params_m"] > 3.0
    sf2 = load_study_file(path, runs_root=runs_root)
    sf2 = sf2.model_copy(update={"budget": sf2.budget.model_copy(update={"n_trials": 4}),
                                 "constraints": sf2.constraints.model_copy(update={"max_params_m": 3.0})})
    prep2 = prepare(sf2)
    assert prep2.space.pairs == ["Unet/tu-mobilenetv3_small_100"]  # this session alone would drop resnet18
    again = run_search(prep2)
    assert prep2.space.pairs == ["Unet/resnet18", "Unet/tu-mobilenetv3_small_100"]  # the study's list kept
    trials = again.get_trials()
    assert not [t for t in trials if t.state == TrialState.FAIL], [t.user_attrs.get("stop_reason") for t in trials]
    chosen = select_trial(again, sf2)
    assert chosen.user_attrs["params_m"] <= 3.0 and chosen.number != big.number


def _dominates(a, b) -> bool:
    better_or_equal = a.values[0] >= b.values[0] and a.values[1] <= b.values[1]
    return better_or_equal and (a.values[0] > b.values[0] or a.values[1] < b.values[1])


def test_pareto_mode_returns_a_non_dominated_set(tiny_study, runs_root):
    space = _space(architectures=["Unet", "Linknet"], encoders=["resnet18", "tu-mobilenetv3_small_100"])
    path = tiny_study(space=space, **{"budget.n_trials": 4, "budget.trial_epochs": 1,
                                      "objectives": ["val_miou", "params_m"]})
    sf = load_study_file(path, runs_root=runs_root)
    study = run_all(prepare(sf))
    assert len(study.directions) == 2
    for restart in (False, True):
        if restart:  # resume with a larger total: still a front, still no pruning
            sf = sf.model_copy(update={"budget": sf.budget.model_copy(update={"n_trials": 5})})
            prep = prepare(sf)
            view = morning_view(prep)  # as the CLI hands it to the search
            study = run_all(prep, callbacks=view.callbacks, completed_hooks=view.completed_hooks)
        done = study.get_trials(states=(TrialState.COMPLETE,))
        assert len(done) == len(study.get_trials()) == (5 if restart else 4)  # nothing pruned
        front = study.best_trials
        assert front and all(not _dominates(a, b) for a in front for b in front)
        for t in done:
            assert t in front or any(_dominates(f, t) for f in front)
        assert select_trial(study, sf) in front
        assert {t.number for t in pareto_front(study, sf)} == {t.number for t in front}
    from optuna_dashboard import get_note

    note = get_note(study)  # the morning view works for multi-objective studies too
    assert f"Picked from the Pareto front (knee): trial #{select_trial(study, sf).number}" in note
    assert f"## Pareto front ({len(front)} trials)" in note


def test_two_stages_pass_the_winner_on(tiny_study, runs_root):
    stages = [{"name": "data", "search": ["aug.*", "adamw.lr"], "n_trials": 2},
              {"name": "model", "search": ["model", "batch_size"], "n_trials": 1}]
    path = tiny_study(**{"budget.trial_epochs": 1, "stages": stages})
    sf = load_study_file(path, runs_root=runs_root)
    run_all(prepare(sf))
    stage2 = final_study(sf, f"sqlite:///{runs_root / 'tiny' / 'study.db'}")
    assert stage2.study_name == "tiny.model"
    import optuna

    stage1 = optuna.load_study(study_name="tiny.data", storage=f"sqlite:///{runs_root / 'tiny' / 'study.db'}")
    winner = select_trial(stage1, sf).params
    # stage 1 searched the augmentation and LR with the baseline model fixed
    assert {t.params["model"] for t in stage1.trials} == {"Unet/resnet18"}
    # stage 2 starts from stage 1's winner, enqueued, and keeps its augmentation and LR
    assert stage2.trials[0].params == winner
    # restart with a bigger stage 2: stage 1 is not run again, stage 2 continues
    stages[1]["n_trials"] = 3
    sf2 = load_study_file(tiny_study(**{"budget.trial_epochs": 1, "stages": stages}), runs_root=runs_root)
    run_all(prepare(sf2))
    stage1 = optuna.load_study(study_name="tiny.data", storage=f"sqlite:///{runs_root / 'tiny' / 'study.db'}")
    stage2 = optuna.load_study(study_name="tiny.model", storage=f"sqlite:///{runs_root / 'tiny' / 'study.db'}")
    assert len(stage1.trials) == 2 and len(stage2.get_trials(states=FINISHED)) == 3
    for t in stage2.trials:
        assert t.params["adamw.lr"] == winner["adamw.lr"]
        assert {k: v for k, v in t.params.items() if k.startswith("aug.")} == \
               {k: v for k, v in winner.items() if k.startswith("aug.")}
    assert stage2.user_attrs["stage"] == "model" and "adamw.lr" in stage2.user_attrs["fixed_params"]
    # the morning view and rerun find the stages' studies (there is no study named "tiny")
    from automl.cli import main

    assert main(["report", str(path), "--runs-root", str(runs_root)]) == 0
    assert "# Search summary: tiny.model" in (runs_root / "tiny" / "report" / "report.md").read_text()
    assert main(["rerun", str(path), "--runs-root", str(runs_root), "--stage", "data", "--trial", "1",
                 "--epochs", "1"]) == 0
    assert (runs_root / "tiny" / "reruns" / "data_trial_1").is_dir()
    assert "tiny" not in optuna.get_all_study_names(f"sqlite:///{runs_root / 'tiny' / 'study.db'}")


def test_stage_pattern_that_matches_nothing_is_rejected(tiny_study, runs_root):
    from automl.errors import ConfigError

    path = tiny_study(**{"stages": [{"name": "a", "search": ["augment.*"], "n_trials": 1}]})
    with pytest.raises(ConfigError, match="'augment.\\*' matches no parameter"):
        prepare(load_study_file(path, runs_root=runs_root))
