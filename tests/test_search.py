"""A real search end to end on tiny synthetic data: trials, user_attrs, pruning, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from automl.config import load_study_file
from automl.study.runner import prepare, run_search
from automl.trial_config import TrialConfig


def test_three_trial_search_records_everything(tiny_study, runs_root):
    sf = load_study_file(tiny_study(), runs_root=runs_root)
    prep = prepare(sf)
    study = run_search(prep)
    trials = study.get_trials()
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 3
    first = trials[0]
    assert first.user_attrs["baseline"] is True and first.params["model"] == "Unet/resnet18"
    best = study.best_trial
    cfg = TrialConfig.from_dict(best.user_attrs["config"])
    assert cfg.epochs == 2 and cfg.data.classes[0] == "background"
    for key in ("params_m", "latency_ms", "miou_per_class", "epoch_times_s", "peak_mem_mb", "seed",
                "stop_reason", "compute_s", "wall_s"):
        assert key in best.user_attrs, key
    assert set(best.user_attrs["miou_per_class"]) == set(sf.data.classes)
    assert 0.0 <= best.value <= 1.0 and best.intermediate_values[2] == best.value
    # The best trial's weights are kept in SMP's format, with the config that produced them.
    from automl.trial.checkpoint import load_model

    model, saved_cfg, info = load_model(runs_root / "tiny" / "best_trial")
    assert saved_cfg == cfg and info["trial_number"] == best.number and info["value"] == best.value
    # Resuming a study that reached its total runs nothing more.
    again = run_search(prepare(sf))
    assert len(again.get_trials()) == len(trials)


def test_pruning_happens(tiny_study, runs_root):
    sf = load_study_file(tiny_study(**{"budget.n_trials": 2, "budget.trial_epochs": 3}), runs_root=runs_root)
    prep = prepare(sf)
    from automl.study.runner import setup_study

    study = setup_study(prep)
    # after the good baseline, a config whose learning rate is ~0 cannot keep up at epoch 1
    study.enqueue_trial({"model": "Unet/resnet18", "optimizer": "sgd", "sgd.lr": 1e-7, "schedule": "constant",
                         "aux_head": False})
    run_search(prep, study)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED]
    pruned = study.get_trials()[1]
    assert pruned.user_attrs["stop_reason"].startswith("pruned at epoch 1")
    assert pruned.user_attrs["epochs_run"] == 1


def test_cli_search_and_optuna_best_trial(tiny_study, runs_root, tmp_path):
    study_path = tiny_study(**{"budget.n_trials": 2, "budget.trial_epochs": 1})
    run = subprocess.run([sys.executable, "-m", "automl", "search", str(study_path), "--runs-root",
                          str(runs_root)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "best trial #" in run.stdout and "optuna best-trial" in run.stdout
    url = f"sqlite:///{runs_root / 'tiny' / 'study.db'}"
    out = subprocess.run([str(Path(sys.executable).parent / "optuna"), "best-trial", "--storage", url, "--study-name", "tiny",
                          "-f", "json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    best = json.loads(out.stdout)
    assert TrialConfig.from_dict(best["user_attrs"]["config"]).model.arch in ("Unet", "Linknet")
    loaded = optuna.load_study(study_name="tiny", storage=url)
    assert len(loaded.trials) == 2


def test_bad_config_exits_before_compute(tiny_study, runs_root):
    study_path = tiny_study(**{"budget.n_trials": 0})
    run = subprocess.run([sys.executable, "-m", "automl", "search", str(study_path), "--runs-root",
                          str(runs_root)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "budget.n_trials" in run.stdout
    assert not (runs_root / "tiny").exists()


def test_only_the_epochs_the_pruner_reads_are_scored(tiny_study, runs_root):
    from automl.study.runner import pruner_epochs

    path = tiny_study(**{"budget.n_trials": 1, "budget.trial_epochs": 4,
                         "pruner": {"type": "hyperband", "min_resource": 1, "reduction_factor": 3}})
    sf = load_study_file(path, runs_root=runs_root)
    assert pruner_epochs(sf) == {1, 3, 4}
    trial = run_search(prepare(sf)).trials[0]
    assert sorted(trial.intermediate_values) == [1, 3, 4] and trial.user_attrs["epochs_run"] == 4
    every = sf.model_copy(update={"eval": sf.eval.model_copy(update={"epochs": "every"})})
    assert pruner_epochs(every) is None
