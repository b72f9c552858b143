"""Train for a time, with a schedule spanning a time: equal-time trials, pricing that keeps fixed
costs apart from per-epoch ones, a final retrain that re-plans to fill its time, and the LambdaLR
that replaced OneCycleLR."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from automl.trial.engine import TimeStats, fit
from automl.trial.length import EqualTime, FinishBy, GatedBaseline
from automl.trial.losses import task_criterion
from automl.trial.optim import build_scheduler
from automl.trial_config import ScheduleSpec
from tests.test_fit_hook import CPU, DATA, _cfg

STEPS_PER_EPOCH = 2  # tests.test_fit_hook: 8 training images, batch 4


class FakeClock:
    """The clock fit and the re-plan read: it moves only when a step or a val pass says so, so
    an epoch costs exactly what a test gives it (powers of two: sums are exact)."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    import automl.trial.engine as engine
    import automl.trial.length as length_module

    c = FakeClock()
    fake = SimpleNamespace(perf_counter=c, monotonic=c)
    monkeypatch.setattr(engine, "time", fake)
    monkeypatch.setattr(length_module, "time", fake)
    real = engine.confusion_on
    c.val_pass_s = 0.0

    def timed_val(*args, **kwargs):
        c.t += c.val_pass_s
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "confusion_on", timed_val)
    return c


def _costly(cfg, clock: FakeClock, per_step_s: float, first_epoch_extra_s: float = 0.0):
    """The task loss; each step advances the clock: a config whose epochs cost what we say."""
    task = task_criterion(cfg, CPU.device)

    def criterion(images, masks, outputs, epoch):
        clock.t += per_step_s + (first_epoch_extra_s / STEPS_PER_EPOCH if epoch == 1 else 0.0)
        return task(images, masks, outputs, epoch)

    return criterion


def _equal_time_run(clock: FakeClock, per_step_s: float, ref_s: float, rungs):
    cfg = _cfg().with_changes(epochs=4, schedule=ScheduleSpec(name="cosine"))
    length = EqualTime(4, None, rungs, ref_s)
    results = []
    fit(cfg, DATA, CPU, criterion=_costly(cfg, clock, per_step_s), length=length, on_epoch=results.append)
    return length, results


def test_equal_time_trial_trains_a_slower_config_for_fewer_epochs(clock):
    ref_s = 0.25  # the baseline's epoch; this config's epochs take 2.5 times as long
    fast, _ = _equal_time_run(clock, 0.125, ref_s, None)
    slow, res = _equal_time_run(clock, 0.3125, ref_s, None)
    assert fast.epochs == 4
    assert slow.epochs == 2  # 4 reference epochs of time: 1.6 of its own, rounded
    assert slow.schedule_epochs == 2
    assert res[-1].lr == pytest.approx(0.0, abs=1e-12)  # its schedule ends with its last epoch
    # scores are reported in reference epochs: its first epoch took 2.5 of them
    assert [(r.epoch, r.step) for r in res] == [(1, 2), (2, 4)]
    assert res[-1].full_val  # the last reports at trial_epochs, on all of val


def test_equal_time_trial_scores_only_the_rungs_the_pruner_reads(clock):
    # Hyperband's rungs 1 and 3 of 4 reference epochs; this config's epochs take half a reference one
    length, res = _equal_time_run(clock, 0.0625, 0.25, frozenset({1, 3, 4}))
    assert length.epochs == 8
    assert [(r.epoch, r.step) for r in res] == [(2, 1), (6, 3), (8, 4)]


def test_equal_time_trial_epochs_are_clamped(clock):
    length, _ = _equal_time_run(clock, 0.0078125, 0.25, None)  # 16 times faster: at most 3 x trial_epochs
    assert length.epochs == 12


def test_a_gated_baseline_ends_after_its_first_epoch_when_no_search_can_follow(clock):
    """The gate sees the trial's predicted length (elapsed + the rest at the first epoch's time);
    a reason ends training there, on all of val, with the LR schedule of the full trial."""
    asked = []

    def run(reason):
        cfg = _cfg().with_changes(epochs=4, schedule=ScheduleSpec(name="cosine"))
        t0 = clock.t - 3.0  # 3 s spent before training (setup, latency probe)
        length = GatedBaseline(4, 8, None, lambda s: asked.append(s) or reason, lambda: clock.t - t0)
        res = []
        fit(cfg, DATA, CPU, criterion=_costly(cfg, clock, 0.5), length=length, on_epoch=res.append)
        return length, res

    length, res = run("no search: too short")
    assert asked == [3.0 + 1.0 + 3 * 1.0]  # 3 s before, the first epoch's 1 s, and 3 more of those
    assert length.cut == "no search: too short" and length.epochs == 1 and length.schedule_epochs == 8
    assert [r.epoch for r in res] == [1] and res[-1].full_val
    assert res[-1].lr > 0  # the schedule spans the trial it would have been: not annealed in one epoch
    length, res = run(None)
    assert length.cut is None and [r.epoch for r in res][-1] == 4


def test_fixed_costs_are_not_priced_as_epochs(tiny_study, runs_root, clock):
    """A slow first epoch (warm-up) and slow val passes: a final epoch is still priced at the
    steady training epoch, and the fixed costs are priced apart."""
    from optuna.trial import create_trial

    from automl.config import load_study_file
    from automl.overnight import epoch_seconds, fixed_seconds
    from automl.trial.objective import time_attrs

    clock.val_pass_s = 4.0
    cfg = _cfg().with_changes(epochs=3)
    times, hist = TimeStats(), []
    fit(cfg, DATA, CPU, criterion=_costly(cfg, clock, 0.5, first_epoch_extra_s=3.0), times=times,
        on_epoch=hist.append)
    assert times.epoch_train_s == [4.0, 1.0, 1.0]
    attrs = {**time_attrs(times), "train_s": times.train_s, "eval_s": times.eval_s, "epochs_run": 3,
             "epoch_times_s": [h.seconds for h in hist]}
    trial = create_trial(value=0.5, user_attrs=attrs)
    sf = load_study_file(tiny_study(), runs_root=runs_root)
    assert epoch_seconds(trial, sf, 8, 2) == 1.0  # not 5 (a scored epoch), nor 2 (the mean, warm-up included)
    # the warm-up's 3 s, and eval_points (4) passes of 4 s
    assert fixed_seconds(trial, sf, 8, 2) == 3.0 + 4 * 4.0


def test_final_replans_to_its_finish_time_with_a_fake_clock():
    now = [100.0]
    length = FinishBy(10, finish_by=160.0, eval_points=4, subset_pass_s=1.0, full_pass_s=3.0, margin=0.0,
                      clock=lambda: now[0])
    length.start(5)
    assert length.span.steps == 50
    length.after_epoch(1, [4.0])
    assert length.epochs == 10  # not before epoch 2: epoch 1 carries the warm-up
    now[0] = 106.0
    length.after_epoch(2, [4.0, 2.0])
    # 54 s left, less 3 subset passes and the full one (6 s): 24 more epochs of 2 s
    assert length.epochs == 26 and length.span.steps == 26 * 5
    assert length.scored(26, []) and not length.scored(10, []) and length.scored(13, [])


def test_final_moves_its_end_when_its_own_val_passes_reprice_the_work_after_it():
    """The reserve after the retrain was priced from a trial's (cold) val pass; past the midway
    look, once the retrain has two passes of its own, the faster one re-prices it (the first is
    cold too), once, and the epochs follow the new end."""
    now, passes = [100.0], []
    asked = []

    def retime(pass_s: float) -> float:
        asked.append(pass_s)
        return 190.0  # the re-priced reserve leaves 30 s more for training

    length = FinishBy(10, finish_by=160.0, eval_points=4, subset_pass_s=1.0, full_pass_s=3.0, margin=0.0,
                      clock=lambda: now[0], subset_passes=lambda: passes, retime=retime)
    length.start(5)
    now[0] = 106.0
    length.after_epoch(2, [4.0, 2.0])
    assert length.epochs == 26 and length.midway == 13
    passes.append(3.0)  # the retrain's first pass: cold
    now[0] = 126.0
    length.after_epoch(13, [4.0] + [2.0] * 12)
    assert asked == [] and length.finish_by == 160.0  # one pass, the cold one: no re-pricing from it
    passes.append(1.0)
    now[0] = 130.0
    length.after_epoch(14, [4.0] + [2.0] * 13)
    assert asked == [1.0]
    # 60 s left, less 1 subset pass (2 s, its own mean) and the full one (3 s): 27 more epochs of 2 s
    assert length.finish_by == 190.0 and length.epochs == 14 + 27
    passes.append(0.5)
    now[0] = 132.0
    length.after_epoch(15, [4.0] + [2.0] * 14)
    assert asked == [1.0]  # once
    same = FinishBy(10, finish_by=160.0, eval_points=4, subset_pass_s=1.0, full_pass_s=3.0, margin=0.0,
                    clock=lambda: now[0], subset_passes=list)
    now[0] = 106.0
    same.start(5)
    same.after_epoch(2, [4.0, 2.0])
    same.after_epoch(13, [4.0] + [2.0] * 12)  # no retime, no passes: the end stays
    assert same.finish_by == 160.0


def test_a_small_move_of_the_end_by_the_re_pricing_still_moves_the_plan():
    """A re-pricing that gives the retrain back a few epochs (within the midway look's 5 %
    tolerance) moves the plan too: left at its count, the em-like run at 351eec7 ended its retrain
    21 s early and latency timing filled the gap."""
    now, passes = [100.0], [3.0, 1.0]
    length = FinishBy(10, finish_by=320.0, eval_points=4, subset_pass_s=1.0, full_pass_s=3.0, margin=0.0,
                      clock=lambda: now[0], subset_passes=lambda: passes, retime=lambda pass_s: 326.0)
    length.start(5)
    now[0] = 104.0
    length.after_epoch(2, [2.0, 2.0])
    planned = length.epochs  # 216 s less 2 subset passes (2 s, their mean) and the full one (3 s): 105 more
    assert planned == 2 + 105 and length.midway == 54
    now[0] = 208.0
    length.after_epoch(54, [2.0] * 54)  # on pace: the count stays
    assert length.epochs == planned
    now[0] = 210.0
    length.after_epoch(55, [2.0] * 55)  # the re-pricing gives back 6 s: three epochs, under 5 % of 107
    assert length.finish_by == 326.0 and length.epochs == planned + 3


def _simulate_final(pace_after_midway: float, margin: float = 0.0) -> tuple[FinishBy, float]:
    """A retrain planned to end at 160 s on a fake clock: epochs of 2 s until the midway look,
    then of ``pace_after_midway``; subset passes of 1 s, the full one 3 s. Returns the length
    and the time training and its passes ended."""
    now, epochs_s, passes = [104.0], [4.0], []
    length = FinishBy(10, finish_by=160.0, eval_points=4, subset_pass_s=1.0, full_pass_s=3.0, margin=margin,
                      clock=lambda: now[0], subset_passes=lambda: passes)
    length.start(5)
    epoch = 1
    while epoch < length.epochs:
        epoch += 1
        pace = 2.0 if length.midway is None or epoch <= length.midway else pace_after_midway
        epochs_s.append(pace)
        now[0] += pace
        length.after_epoch(epoch, epochs_s)
        if epoch < length.epochs and length.scored(epoch, epochs_s):
            passes.append(1.0)
            now[0] += 1.0
    return length, now[0] + 3.0


def test_final_shortens_when_the_machine_slows_after_its_midway_look():
    """Epochs slow from 2 s to 3 s after the midway look: the late checks shorten the plan so
    that training ends by its time, where the midway plan alone would overrun it by ~12 s; on a
    steady machine they change nothing, with or without the initial plan's margin."""
    steady, steady_end = _simulate_final(2.0)
    assert steady.epochs == 26 and 158.0 <= steady_end <= 160.0
    with_margin, margin_end = _simulate_final(2.0, margin=0.1)
    assert with_margin.epochs == 23 and margin_end <= 160.0  # the plan after epoch 2, at 2.2 s an epoch
    slowed, slowed_end = _simulate_final(3.0)
    assert slowed.epochs < 26
    assert slowed_end <= 160.0


def test_a_run_sharing_its_time_with_a_later_one_prices_both():
    """A distilled student's run re-plans so that the student alone, trained after it at the same
    epochs, ends in time too: each epoch costs both runs' time and both runs' val passes count."""
    now = [100.0]
    shared = FinishBy(10, finish_by=160.0, eval_points=4, subset_pass_s=1.0, full_pass_s=3.0, margin=0.0,
                      clock=lambda: now[0], epoch_cost=lambda s: s + (s - 0.5), runs=2)
    shared.start(5)
    now[0] = 106.0
    shared.after_epoch(2, [4.0, 2.0])
    # 54 s left, less this run's 3 subset passes and full pass and the later run's (12 s):
    # 12 more epochs at 2 s here and 1.5 s in the later run
    assert shared.epochs == 2 + 12
    alone = FinishBy(10, finish_by=160.0, eval_points=4, subset_pass_s=1.0, full_pass_s=3.0, margin=0.0,
                     clock=lambda: now[0])
    alone.start(5)
    alone.after_epoch(2, [4.0, 2.0])
    assert alone.epochs == 26  # the same time for one run alone


@pytest.mark.parametrize("planned", [2, 40])
def test_final_retrain_fills_its_time(clock, monkeypatch, planned):
    """Planned too short or too long, the retrain re-plans after epoch 2 and ends within its time,
    having used at least 95 % of it."""
    import automl.final.retrain as rt

    cfg = _cfg().with_changes(epochs=planned)
    clock.val_pass_s = 0.25
    real_fit = rt.fit
    monkeypatch.setattr(rt, "fit", lambda *a, **k: real_fit(*a, **{**k, "criterion": _costly(cfg, clock, 0.5)}))
    t0, budget = clock(), 20.0
    res = rt.retrain(cfg, DATA, CPU, eval_points=4, until=rt.TrainUntil(t0 + budget, 0.25, 0.25))
    took = clock() - t0
    assert 0.95 * budget <= took <= budget
    assert res.epochs == 18 and res.history[-1].epoch == 18 and res.history[-1].full_val


def test_lambda_onecycle_matches_torch_onecycle():
    for opt_name, key in (("adam", "betas"), ("sgd", "momentum")):
        for warmup in (0.0, 0.3):
            for total in (1, 7, 40):
                opts = []
                for _ in range(2):
                    p = [torch.nn.Parameter(torch.zeros(2))]
                    opts.append(torch.optim.Adam(p, lr=0.01) if opt_name == "adam" else torch.optim.SGD(p, lr=0.01))
                old = torch.optim.lr_scheduler.OneCycleLR(opts[0], max_lr=[0.01], total_steps=total,
                                                          pct_start=warmup or 0.25)
                new = build_scheduler(opts[1], ScheduleSpec(name="onecycle", warmup_frac=warmup), total)
                for _ in range(total):
                    a, b = opts[0].param_groups[0], opts[1].param_groups[0]
                    assert b["lr"] == pytest.approx(a["lr"], rel=1e-9, abs=1e-15)
                    m_a, m_b = (a[key][0], b[key][0]) if key == "betas" else (a[key], b[key])
                    assert m_b == pytest.approx(m_a, rel=1e-9)
                    for o in opts:
                        o.step()
                    old.step()
                    new.step()


def test_latency_timing_shrinks_to_its_time_box_but_keeps_a_floor(monkeypatch):
    """Under `automl run` the final's latency timing gets the time left: each call here costs 1 s
    of a fake clock, so a box of 20 s over 2 variants times (10 − warm-up) runs each, and a box of
    0 s still times MIN_RUNS; without a box every requested run is timed."""
    import automl.final.latency as latency

    c = FakeClock()
    monkeypatch.setattr(latency, "time", SimpleNamespace(perf_counter=c, sleep=lambda s: None))

    def call():
        c.t += 1.0

    fns = {"a": call, "b": call}
    boxed = latency.measure_all(fns, runs=30, warmup=2, pause_s=0.0, max_s=20.0)
    assert [lat.runs for lat in boxed.values()] == [8, 8]
    assert all(lat.median_ms == 1000.0 for lat in boxed.values())
    assert [lat.runs for lat in latency.measure_all(fns, runs=30, warmup=2, pause_s=0.0, max_s=0.0).values()] \
        == [latency.MIN_RUNS] * 2
    assert [lat.runs for lat in latency.measure_all(fns, runs=30, warmup=2, pause_s=0.0).values()] == [30, 30]


def test_a_short_latency_box_times_what_ships_and_leaves_out_what_does_not_fit(monkeypatch):
    """A required timing always runs; an optional one only if its warm-up and fewest runs fit in
    the time left at its expected call time. Fake clock: "shipped" and "slow" cost 1 s a call,
    "fast" 0.1 s; in a 12-s box "shipped" takes 7 s (its floor), "slow" would need 7 of the 5
    left and is left out, "fast" fits and gets every run."""
    import automl.final.latency as latency

    c = FakeClock()
    monkeypatch.setattr(latency, "time", SimpleNamespace(perf_counter=c, sleep=lambda s: None))

    def cost(s):
        def call():
            c.t += s
        return call

    fns = {"shipped": cost(1.0), "slow": cost(1.0), "fast": cost(0.1)}
    optional = {"slow": 1.0, "fast": 0.1}
    boxed = latency.measure_all(fns, runs=30, warmup=2, pause_s=0.0, max_s=12.0, optional=optional)
    assert list(boxed) == ["shipped", "fast"]
    assert boxed["shipped"].runs == latency.MIN_RUNS and boxed["fast"].runs == 30
    # no box: everything is timed
    assert list(latency.measure_all(fns, runs=3, warmup=1, pause_s=0.0, optional=optional)) == list(fns)


def test_the_final_times_its_default_variant_first_and_reports_what_it_left_out(monkeypatch):
    """``_latencies`` with a short box: the default (INT8 + TTA) and its plain twin are timed (the
    twin also alone), torch and ORT fp32, priced by their val pass per image, are left out."""
    import numpy as np

    import automl.final.latency as latency
    from automl.bundle.variants import ORT_FP32, ORT_INT8, TORCH_FP32
    from automl.final.pipeline import _latencies

    c = FakeClock()
    monkeypatch.setattr(latency, "time", SimpleNamespace(perf_counter=c, sleep=lambda s: None))

    class Fake:
        def __init__(self, s):
            self.s = s

        def predict(self, image):
            c.t += self.s

        def model_input(self, image):
            return image

        def logits(self, x):
            c.t += self.s

    preds = {TORCH_FP32: Fake(1.0), ORT_FP32: Fake(0.8), ORT_INT8: Fake(0.3), ORT_INT8.with_tta(): Fake(0.6),
             TORCH_FP32.with_tta(): Fake(2.0), ORT_FP32.with_tta(): Fake(1.6)}
    call_s = {k: p.s for k, p in preds.items()}
    first = [ORT_INT8.with_tta(), ORT_INT8]
    out, alone = _latencies(preds, np.zeros((4, 4, 3), np.uint8), runs=30, threads=1, max_s=12.0, first=first,
                            call_s=call_s)
    assert set(out) == set(first) and set(alone) == {ORT_INT8}
    # no box (a plain `automl final`): every variant, end to end and alone
    out, alone = _latencies(preds, np.zeros((4, 4, 3), np.uint8), runs=3, threads=1, first=first, call_s=call_s)
    assert set(out) == set(preds) and set(alone) == {TORCH_FP32, ORT_FP32, ORT_INT8}
