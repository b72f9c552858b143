"""`automl run`: one budget split between search and final; a killed run resumes in its stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from automl.config import load_study_file
from automl.errors import ConfigError
from automl.overnight import BudgetPlan, final_epochs
from automl.trial_config import TrialConfig


def test_final_epochs_follow_the_budget_not_the_trial_length(tiny_study, runs_root):
    from automl.config import load_study_file

    sf = load_study_file(tiny_study(**{"run.search_fraction": 0.4, "run.final_reserve": 10, "run.epoch_margin": 0}),
                         runs_root=runs_root)
    plan = BudgetPlan.split(600, sf)
    assert plan.search_s == 240 and plan.reserve_s == 10
    # search used 250 s (it finishes its last trial past its share): 340 s left at 2 s an epoch
    assert final_epochs(plan, 250, 2.0) == 170
    assert final_epochs(plan, 600, 2.0, minimum=3) == 3  # never fewer than the minimum
    # with the default margin an epoch is priced at 2.2 s
    plan = BudgetPlan.split(600, load_study_file(tiny_study(**{"run.search_fraction": 0.4, "run.final_reserve": 10}),
                                                  runs_root=runs_root))
    assert final_epochs(plan, 250, 2.0) == 154
    assert plan.shortfall(sf) is None  # 10 s reserve fits in a quarter of 600 s


def test_a_short_budget_prices_timing_the_shipped_variant_not_every_alternative(tiny_study, runs_root):
    """At 10 minutes on 512x512 images (0.42 s a val image, the em-like benchmark) timing all six
    variants at their fewest runs took 50 s of the reserve; the final times what ships first and
    the rest only with time left, so the reserve prices the shipped variant's fewest runs (with TTA:
    end to end, without, and the model alone). Each variant is priced at its own measured cost;
    the calibration set is capped by the training images and priced for the plain recipe (a
    fallback draws on latency's share); the scoring as the final scores: TTA for torch and INT8
    on val, on the holdout what the plain recipe ships and its references."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from automl import overnight
    from automl.bundle.variants import ORT_FP32, ORT_INT8, TORCH_FP32
    from automl.final.extras import ALL
    from automl.final.latency import MIN_RUNS, WARMUP_RUNS

    sf = load_study_file(tiny_study(**{"final.tta.hflip": True, "final.tta.vflip": False}), runs_root=runs_root)
    trial = create_trial(params={"x": 0.0}, distributions={"x": FloatDistribution(0, 1)}, value=0.5,
                         user_attrs={"eval_full_s": 6 * 0.42})
    short, long = BudgetPlan.split(600, sf), BudgetPlan.split(36000, sf)
    per, cost = 0.42, overnight.VARIANT_COST
    each = cost[TORCH_FP32] + cost[ORT_FP32] + cost[ORT_INT8]
    # val: every variant, torch and INT8 also with TTA (2 views; ORT fp32 + TTA would repeat torch's),
    # and an INT8 fallback; the holdout: INT8 + TTA as the plain recipe ships it, INT8 and torch
    val = 6 * (each + 2 * (cost[TORCH_FP32] + cost[ORT_INT8]) + cost[ORT_INT8])
    holdout = 12 * (cost[TORCH_FP32] + cost[ORT_INT8] + 2 * cost[ORT_INT8])
    fixed = per * (val + holdout + overnight.CALIBRATIONS * overnight.CALIBRATION_COST * 24) + overnight.EXPORT_S \
        + overnight.BUNDLE_WRITE_S
    shipped_floor = per * cost[ORT_FP32] * (2 + 2) * (MIN_RUNS + WARMUP_RUNS)
    assert shipped_floor > overnight.LATENCY_SHARE * 600  # the floor, not the share, prices it here
    got = overnight.reserve_seconds(short, trial, sf, n_val=6, n_holdout=12, n_train=24, extras=ALL)
    assert got == pytest.approx(fixed + shipped_floor)
    assert got < fixed + per * each * (2 + 2) * (MIN_RUNS + WARMUP_RUNS)  # all three variants' floor: more
    # at 30 minutes the share, above the floor and below the full runs, prices it
    half_hour = BudgetPlan.split(1800, sf)
    assert shipped_floor < overnight.LATENCY_SHARE * 1800 < per * each * (2 + 2) * (sf.final.latency_runs + WARMUP_RUNS)
    assert overnight.reserve_seconds(half_hour, trial, sf, n_val=6, n_holdout=12, n_train=24, extras=ALL) == \
        pytest.approx(fixed + overnight.LATENCY_SHARE * 1800)
    # a long night times every variant at its full runs
    full = per * each * (2 + 2) * (sf.final.latency_runs + WARMUP_RUNS)
    assert overnight.reserve_seconds(long, trial, sf, n_val=6, n_holdout=12, n_train=24, extras=ALL) == pytest.approx(fixed + full)
    # without n_train the calibration set is final.int8.calibration_images
    assert overnight.reserve_seconds(short, trial, sf, n_val=6, n_holdout=12, extras=ALL) > got


def test_a_short_run_leaves_out_the_extras_that_cost_more_than_their_share(tiny_study, runs_root):
    """INT8 and the holdout's reference scores are not needed to ship a model. At 10 minutes on
    512x512 images (0.56 s a val image, benchmarks.final_costs) they would cost the retrain about 40 s; `automl run` does
    each only when its price, what it adds to the work after the retrain, is at most
    ``run.extras_share`` of the budget, and prices the reserve without those it leaves out. The
    retrain's midway re-pricing keeps the plan's choice whatever the new speed."""
    from types import SimpleNamespace

    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from automl import overnight
    from automl.bundle.variants import ORT_FP32, ORT_INT8, TORCH_FP32
    from automl.final.extras import ALL, Extras

    sf = load_study_file(tiny_study(**{"final.tta.hflip": True, "final.tta.vflip": False}), runs_root=runs_root)
    trial = create_trial(params={"x": 0.0}, distributions={"x": FloatDistribution(0, 1)}, value=0.5,
                         user_attrs={"eval_full_s": 6 * 0.56, "epoch_train_s": [3.0, 2.0, 2.0]})
    data = SimpleNamespace(train=[0] * 24, val=[0] * 6, holdout=[0] * 12)
    per, cost = 0.56, overnight.VARIANT_COST
    ten_min, night = BudgetPlan.split(600, sf), BudgetPlan.split(36000, sf)

    def reserve(plan, extras):
        return overnight.reserve_seconds(plan, trial, sf, 6, 12, n_train=24, extras=extras)

    # INT8's price: calibration and its val scores, less what its cheaper holdout passes save
    int8 = per * (overnight.CALIBRATIONS * overnight.CALIBRATION_COST * 24 + 6 * cost[ORT_INT8] * (1 + 2 + 1)
                  - 12 * (cost[ORT_FP32] - cost[ORT_INT8]) * (2 + 1))
    assert sf.run.extras_share * 600 < int8 < sf.run.extras_share * 36000
    # the references once INT8 is out: ORT fp32 without TTA and torch fp32
    refs = per * 12 * (cost[ORT_FP32] + cost[TORCH_FP32])
    assert sf.run.extras_share * 600 < refs

    short = overnight.choose_extras(ten_min, trial, sf, 6, 12, n_train=24)
    assert (short.int8, short.holdout_references) == (False, False)
    assert "run.extras_share" in short.left_out("int8") and f"{int8:.0f} s" in short.left_out("int8")
    assert short.left_out("holdout_references") is not None and len(short.notes()) == 2
    got = reserve(ten_min, None)
    assert got == pytest.approx(reserve(ten_min, short))
    assert reserve(ten_min, ALL) - got == pytest.approx(int8 + refs)  # 10 min: ~30 s back to the retrain
    plan = overnight.plan_final(ten_min, 0.0, trial, sf, data)
    assert plan.extras == short and plan.reserve_s == pytest.approx(got)
    # past the midway look the new price never puts back what the plan left out
    from automl.trial.engine import subset_indices

    n_sub, unit = len(subset_indices(6, sf.eval.subset)), 0.05  # ten times faster: every extra would fit
    assert overnight.choose_extras(ten_min, trial, sf, 6, 12, per_image_s=unit, n_train=24) == ALL
    got = overnight._retime(ten_min, trial, sf, data, 500.0, extras=short)(n_sub * unit)
    assert got == pytest.approx(500.0 - overnight.reserve_seconds(ten_min, trial, sf, 6, 12, per_image_s=unit,
                                                                  n_train=24, extras=short))

    assert overnight.choose_extras(night, trial, sf, 6, 12, n_train=24) == ALL  # a night does it all
    always = load_study_file(tiny_study(**{"final.tta.hflip": True, "final.tta.vflip": False,
                                          "run.extras_share": 1.0}), runs_root=runs_root)
    assert overnight.choose_extras(BudgetPlan.split(600, always), trial, always, 6, 12, n_train=24) == ALL
    fixed = load_study_file(tiny_study(**{"run.final_reserve": 60}), runs_root=runs_root)
    assert overnight.choose_extras(BudgetPlan.split(600, fixed), trial, fixed, 6, 12) == ALL  # the user's time
    assert Extras.names() == ("int8", "holdout_references")


def test_on_cuda_the_work_after_the_retrain_is_priced_from_a_cpu_forward(tiny_study, runs_root, monkeypatch):
    """The final scores, quantizes and times every variant on the CPU. On a CUDA run the trial's
    GPU val pass (here 10 µs an image) would price that work far too low: the reserve, the search's
    deadline and the retrain's midway re-pricing use the selected model's batch-1 CPU forward
    instead, measured once and cached. A CPU run keeps its trial's val pass."""
    from types import SimpleNamespace

    import torch
    from optuna.trial import create_trial

    from automl import overnight
    from automl.trial.engine import Runtime, subset_indices
    from tests.test_fit_hook import _cfg

    sf = load_study_file(tiny_study(), runs_root=runs_root)
    trial = create_trial(value=0.5, user_attrs={"config": _cfg().to_dict(), "eval_full_s": 6 * 1e-5,
                                                "epoch_train_s": [0.2, 0.1, 0.1], "setup_s": 1.0})
    measured = []
    real = overnight.measure_model
    monkeypatch.setattr(overnight, "measure_model", lambda *a: measured.append(a[3].device.type) or real(*a))
    cuda = SimpleNamespace(sf=sf, runtime=Runtime(torch.device("cuda"), torch.bfloat16, channels_last=True),
                           input_size=(64, 64))
    cpu_s = overnight.cpu_image_seconds(cuda, trial)
    assert measured == ["cpu"] and cpu_s > 1e-4  # a CPU forward, not the GPU's pass
    assert overnight.cpu_image_seconds(cuda, trial) == cpu_s  # cached in the study's latency cache
    assert (sf.run_dir / "latency_cache.json").is_file()
    cpu = SimpleNamespace(sf=sf, runtime=Runtime(torch.device("cpu")), input_size=(64, 64))
    assert overnight.cpu_image_seconds(cpu, trial) is None

    data = SimpleNamespace(train=[0] * 16, val=[0] * 6, holdout=[0] * 12)
    plan = BudgetPlan.split(36000, sf)
    on_gpu = overnight.reserve_seconds(plan, trial, sf, 6, 12, n_train=16)
    on_cpu = overnight.reserve_seconds(plan, trial, sf, 6, 12, per_image_s=cpu_s, n_train=16)
    assert on_cpu > on_gpu
    assert overnight.plan_final(plan, 0.0, trial, sf, data, cpu_s).reserve_s == pytest.approx(on_cpu)
    # past the midway look the retrain's GPU subset pass does not re-price the CPU's work
    retime = overnight._retime(plan, trial, sf, data, 1000.0, cpu_s)
    assert retime(1e-5) == retime(1.0) == pytest.approx(1000.0 - on_cpu)
    n_sub = len(subset_indices(6, sf.eval.subset))  # a CPU run re-prices from its subset pass
    assert overnight._retime(plan, trial, sf, data, 1000.0)(n_sub * 1e-5) == pytest.approx(1000.0 - on_gpu)


def test_a_budget_too_short_for_the_final_stage_is_warned_about(tiny_study, runs_root):
    from automl.config import load_study_file

    sf = load_study_file(tiny_study(**{"run.final_reserve": "2m"}), runs_root=runs_root)
    assert BudgetPlan.split(480, sf).shortfall(sf) is None
    short = BudgetPlan.split(120, sf).shortfall(sf)
    assert short is not None and "30 s for export" in short and "8 min or more" in short


def _timed_trial(start_s: float, wall_s: float, value: float, epoch_s: float):
    import datetime as dt

    from optuna.trial import create_trial

    t0 = dt.datetime(2026, 1, 1)
    trial = create_trial(value=value, user_attrs={"wall_s": wall_s, "train_s": 2 * epoch_s, "epochs_run": 2,
                                                  "epoch_times_s": [epoch_s + 1, epoch_s + 3], "eval_s": 4.0})
    trial.datetime_start = t0 + dt.timedelta(seconds=start_s)
    trial.datetime_complete = trial.datetime_start + dt.timedelta(seconds=wall_s)
    return trial


def test_search_starts_only_trials_that_fit_its_share(tiny_study, runs_root):
    """The gate of `automl run`: no trial that would still run past the search's share, and the
    share shrinks when the final retrain of the best would get fewer than min_final_epochs."""
    from automl.config import load_study_file
    from automl.overnight import SearchGate, epoch_seconds, eval_seconds
    from automl.study.runner import prepare, setup_study
    from automl.study.storage import open_storage

    path = tiny_study(**{"run.search_fraction": 0.5, "run.final_reserve": 10, "run.min_final_epochs": 20,
                         "run.epoch_margin": 0})
    prep = prepare(load_study_file(path, runs_root=runs_root))
    study = setup_study(prep)
    gate = SearchGate(prep, BudgetPlan.split(1000, prep.sf), open_storage(prep.storage_url, prep.sf.storage))
    # search share: 500 s
    assert gate(study) is None  # nothing ran yet
    study.add_trial(_timed_trial(0, 100, 0.5, epoch_s=2.0))
    best = study.best_trial
    assert epoch_seconds(best, prep.sf, 10, 5) == 2.0  # training only: the scored epochs took 3 and 5 s
    assert eval_seconds(best, prep.sf) == prep.sf.final.eval_points * 2.0  # 4 s over two val passes
    assert gate.deadline(study) == 500  # 20 final epochs need 48 s: the share binds
    assert gate(study) is None  # 100 s spent + a 100 s trial fits in 500
    study.add_trial(_timed_trial(100, 300, 0.4, epoch_s=2.0))
    assert "search stopped" in gate(study)  # 400 s + a 200 s trial (the median) would end at 600
    # a best whose epochs take 40 s: 20 of them and the val passes need 808 s of the 990 left
    study.add_trial(_timed_trial(400, 10, 0.9, epoch_s=40.0))
    assert gate.deadline(study) == 1000 - 10 - 20 * 40 - 8
    assert "search stopped" in gate(study)


def test_final_retrain_scores_val_at_a_few_epochs():
    from automl.final.retrain import eval_epochs

    assert eval_epochs(40, 4) == {10, 20, 30, 40}
    assert eval_epochs(3, 4) == {1, 2, 3}  # never past the run, always the last epoch
    assert eval_epochs(7, 1) == {7}


def _run_state(url: str):
    try:
        return optuna.load_study(study_name="tiny", storage=url).user_attrs.get("run_state")
    except Exception:  # noqa: BLE001 - database or study not created yet
        return None


def test_run_respects_the_total_and_resumes_in_the_final(tiny_study, runs_root, tmp_path):
    path = tiny_study(**{"budget.n_trials": 50, "budget.trial_epochs": 1, "run.final_reserve": 5,
                         "final.int8.calibration_images": 4, "final.latency_runs": 5})
    url = f"sqlite:///{runs_root / 'tiny' / 'study.db'}"
    args = [sys.executable, "-m", "automl", "run", str(path), "--runs-root", str(runs_root), "--budget", "60s"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen(args, stdout=open(tmp_path / "first.log", "wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 240
    while _run_state(url) != "final":
        assert time.monotonic() < deadline and first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(0.5)
    first.send_signal(signal.SIGKILL)  # killed during the final retrain
    first.wait()
    study = optuna.load_study(study_name="tiny", storage=url)
    n_trials = len(study.trials)
    assert study.user_attrs["run_search_s"] <= 30 + max(t.user_attrs.get("wall_s", 0) for t in study.trials)
    t0 = time.monotonic()
    second = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(study.trials) == n_trials  # no search after the resume: straight to the final
    assert study.user_attrs["run_state"] == "done"
    assert (runs_root / "tiny" / "bundle" / "report.json").is_file()
    assert study.user_attrs["run_final_epochs"] >= 1
    # the final was sized to what the search left: the resumed run fits in the budget's remainder
    assert time.monotonic() - t0 < 60 + 60  # remainder + start-up, export and INT8 on a loaded 2-core box
    again = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 0 and "complete" in again.stdout
    status = subprocess.run([sys.executable, "-m", "automl", "status", str(path), "--runs-root", str(runs_root)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert "run budget" in status.stdout and "state done" in status.stdout


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_search_fraction_must_leave_room_for_both(tiny_study, runs_root, fraction):
    from automl.config import load_study_file
    from automl.errors import ConfigError

    with pytest.raises(ConfigError, match="run.search_fraction"):
        load_study_file(tiny_study(**{"run.search_fraction": fraction}), runs_root=runs_root)


def test_trials_since_best_counts_finished_trials_after_the_best():
    from optuna.trial import create_trial

    from automl.study.budget import trials_since_best

    study = optuna.create_study(direction="maximize")
    assert trials_since_best(study) == 0
    study.add_trial(create_trial(state=TrialState.PRUNED, value=None, intermediate_values={1: 0.1}))
    assert trials_since_best(study) == 1  # nothing completed yet: every finished trial counts
    for v in (0.5, 0.6):
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=v))
    assert trials_since_best(study) == 0
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.55))
    study.add_trial(create_trial(state=TrialState.PRUNED, value=None, intermediate_values={1: 0.2}))
    study.add_trial(create_trial(state=TrialState.FAIL, value=None))  # a failure is no finished trial
    assert trials_since_best(study) == 2


def test_patience_stops_the_search_when_it_stops_improving(tiny_study, runs_root):
    """The baseline completes; a ~0 learning rate cannot beat it: patience 1 ends the search there,
    far below n_trials."""
    from automl.config import load_study_file
    from automl.study.runner import prepare, run_search, setup_study

    path = tiny_study(**{"budget.n_trials": 6, "budget.trial_epochs": 1, "budget.patience": 1,
                         "pruner.type": "none"})
    prep = prepare(load_study_file(path, runs_root=runs_root))
    study = setup_study(prep)
    study.enqueue_trial({"model": "Unet/resnet18", "optimizer": "sgd", "sgd.lr": 1e-7, "schedule": "constant",
                         "aux_head": False})
    run_search(prep, study)
    # no third trial started (the seed probe, queued behind the second, waits)
    first, second = [t for t in study.trials if not t.user_attrs.get("seed_probe")]
    assert all(t.state == TrialState.WAITING for t in study.trials if t.user_attrs.get("seed_probe"))
    assert first.value > second.value


def test_patience_is_refused_for_a_pareto_search(tiny_study, runs_root):
    from automl.config import load_study_file
    from automl.errors import ConfigError

    path = tiny_study(**{"budget.patience": 3, "objectives": ["val_miou", "params_m"]})
    with pytest.raises(ConfigError, match="budget.patience"):
        load_study_file(path, runs_root=runs_root)


def test_trial_schedule_spans_a_longer_run_and_the_final_resets_it(tiny_study, runs_root):
    """budget.trial_schedule_epochs: a 1-epoch trial on a 4-epoch cosine schedule ends with the LR
    still high; the final retrain's config spans its own epochs again."""
    from automl.config import load_study_file
    from automl.final.source import final_config
    from automl.study.runner import prepare, run_search

    path = tiny_study(**{"budget.n_trials": 1, "budget.trial_epochs": 1, "budget.trial_schedule_epochs": 4,
                         "pruner.type": "none"})
    prep = prepare(load_study_file(path, runs_root=runs_root))
    (trial,) = run_search(prep).trials
    cfg = TrialConfig.from_dict(trial.user_attrs["config"])
    assert (cfg.epochs, cfg.schedule_epochs, cfg.optimizer.lr) == (1, 4, 5e-3)  # the tiny baseline: adamw, cosine
    assert cfg.optimizer.lr * 0.5 < trial.user_attrs["lr_history"][-1] < cfg.optimizer.lr  # cos(pi/4) of 4
    assert final_config(trial, 3).schedule_span == 3

    with pytest.raises(ConfigError, match="trial_schedule_epochs"):
        load_study_file(tiny_study(**{"budget.trial_epochs": 4, "budget.trial_schedule_epochs": 2}),
                        runs_root=runs_root)


def test_run_with_two_workers_keeps_to_the_budget(tiny_study, runs_root):
    """`automl run --workers 2`: both worker processes search under the budget's gate, then the
    final retrain runs once, in the parent, with what is left."""
    path = tiny_study(**{"budget.n_trials": 50, "budget.trial_epochs": 1, "run.final_reserve": 5,
                         "final.int8.calibration_images": 4, "final.latency_runs": 5})
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "automl", "run", str(path), "--runs-root", str(runs_root),
                          "--budget", "40s", "--workers", "2"], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    wall = time.monotonic() - t0
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{runs_root / 'tiny' / 'study.db'}")
    # a seed probe enqueued as the gate closed may still wait: it never started
    started = [t for t in study.trials if t.state != TrialState.WAITING]
    assert len({t.user_attrs.get("worker") for t in started}) == 2  # both processes ran trials
    assert all(t.state.is_finished() for t in started)  # the workers stopped before the final
    longest = max(t.user_attrs.get("wall_s", 0) for t in study.trials)
    assert study.user_attrs["run_search_s"] <= 20 + longest  # the search's share of 40 s, and one trial
    assert study.user_attrs["run_state"] == "done" and study.user_attrs["run_final_epochs"] >= 1
    assert (runs_root / "tiny" / "bundle" / "report.json").is_file()
    assert wall < 40 + 60  # the budget, plus start-up, export and INT8 on a loaded 2-core box


def test_run_retrains_on_train_and_selection_unless_the_study_says_otherwise(tiny_study, runs_root):
    from automl.overnight import for_run

    unset = load_study_file(tiny_study(), runs_root=runs_root)
    assert unset.final.train_on_trainval is None and not unset.final.trainval  # automl final/search: train only
    run = for_run(unset)
    assert run.final.trainval and run.budget.equal == "time"
    kept = for_run(load_study_file(tiny_study(**{"final.train_on_trainval": False}), runs_root=runs_root))
    assert kept.final.train_on_trainval is False and not kept.final.trainval


def test_no_search_when_its_share_affords_too_few_trials(tiny_study, runs_root):
    """Right after the baseline, the gate skips the search when its share fits fewer than
    run.min_search_trials trials of the baseline's length; once searching, it never does."""
    from automl.overnight import SearchGate
    from automl.study.runner import prepare, setup_study
    from automl.study.storage import open_storage

    def gate_for(wanted: int):
        path = tiny_study(**{"run.search_fraction": 0.5, "run.final_reserve": 10, "run.epoch_margin": 0,
                             "run.min_search_trials": wanted})
        prep = prepare(load_study_file(path, runs_root=runs_root / str(wanted)))
        return SearchGate(prep, BudgetPlan.split(1000, prep.sf), open_storage(prep.storage_url, prep.sf.storage)), \
            setup_study(prep)

    baseline = _timed_trial(0, 100, 0.5, epoch_s=2.0)
    baseline.set_user_attr("baseline", True)
    # the share is 500 s: after the 100 s baseline, 4 more trials fit, 5 in all
    gate, study = gate_for(6)
    study.add_trial(baseline)
    reason = gate(study)
    assert reason.startswith("no search: its share affords ~5 trial(s) of ~1.7 min, fewer than the 6")
    # 6 trials of 100 s in half the budget: 1200 s
    assert reason.endswith("A search starts at a --budget of about 20 min or more at this speed "
                           "(run.search_fraction 0.5)")
    probe = _timed_trial(100, 100, 0.5, epoch_s=2.0)
    probe.set_user_attr("seed_probe", True)
    study.add_trial(probe)  # the baseline's re-run is no search trial
    assert gate(study).startswith("no search")
    gate, study = gate_for(5)
    study.add_trial(baseline)
    assert gate(study) is None
    # searching already: a later check never skips it (the usual share rule still applies)
    gate, study = gate_for(50)
    study.add_trial(baseline)
    study.add_trial(_timed_trial(100, 100, 0.4, epoch_s=2.0))
    assert gate(study) is None


def test_the_baseline_stops_at_its_first_epoch_when_no_search_can_follow(tiny_study, runs_root, monkeypatch):
    """Within `automl run`, a share that affords fewer than run.min_search_trials trials of the
    baseline's predicted length ends the baseline after one epoch; no trial (nor seed probe)
    follows, the final is priced from that epoch, and `automl status` says why. The extras the
    plan leaves out reach the final, the study and `automl status`."""
    from automl import overnight
    from automl.final.extras import Extras
    from automl.overnight import SearchGate, plan_final, run_overnight
    from automl.study.runner import prepare
    from automl.study.storage import open_storage
    from automl.view.status import time_lines

    path = tiny_study(**{"budget.trial_epochs": 3, "budget.n_trials": 5, "run.min_search_trials": 50,
                         "run.final_reserve": 5, "final.int8.enabled": False, "final.tta.hflip": False,
                         "final.latency_runs": 5})
    prep = prepare(load_study_file(path, runs_root=runs_root))
    plan = BudgetPlan.split(60, prep.sf)
    gate = SearchGate(prep, plan, open_storage(prep.storage_url, prep.sf.storage))
    assert gate.baseline_gate(plan.search_s / 49) is not None and gate.baseline_gate(plan.search_s / 50) is None
    assert "a --budget of about 2 min or more" in gate.baseline_gate(plan.search_s / 49)  # 50 × 60 s / 49
    why = (("holdout_references", "the holdout's reference scores left out: priced at 9 s"),)
    monkeypatch.setattr(overnight, "choose_extras", lambda *a, **k: Extras(holdout_references=False, why=why))
    run_overnight(prep, 60)
    study = optuna.load_study(study_name="tiny", storage=prep.storage_url)
    report = json.loads((runs_root / "tiny" / "bundle" / "report.json").read_text())
    assert report["extras"]["left_out"] == dict(why) and why[0][1] in report["notes"]
    assert study.user_attrs["run_extras"]["holdout_references"] is False
    assert ("left out after the retrain", why[0][1]) in time_lines(study.user_attrs)
    (base,) = study.trials
    assert base.state == TrialState.COMPLETE and base.user_attrs["baseline"] is True
    assert base.user_attrs["epochs_run"] == 1 and base.user_attrs["search_skipped"].startswith("no search")
    assert base.user_attrs["predicted_wall_s"] > 0
    fp = plan_final(plan, base.user_attrs["wall_s"], base, prep.sf, prep.data)
    assert fp.epoch_s == pytest.approx(base.user_attrs["epoch_train_s"][0])
    assert gate(study) == base.user_attrs["search_skipped"]
    assert study.user_attrs["run_state"] == "done" and study.user_attrs["run_final_epochs"] >= 1
    assert ("search", base.user_attrs["search_skipped"]) in time_lines(study.user_attrs)
