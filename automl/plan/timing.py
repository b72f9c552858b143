"""How long an epoch should take, and from that the trial length and the suggested budget.

A rough model, stated wherever it is used: training time grows with the pixels of the crops
trained on, evaluation with the pixels of the selection split. The rates were measured once
(benchmarks/README.md); machines of the same kind differ by up to 2.5× from day to day, so the
plan is an estimate to start from, not a promise. ``automl run`` itself keeps to the budget it is
given, whatever the estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# CPU: FPN-resnet18 at batch 8 trained CamVid-small's 367 crops of 128² in 18.9 s on one core
# (benchmarks/README.md, "The result that started it"): 3.1 s per megapixel of crops.
CPU_S_PER_MPX = 18.9 / (367 * 128 * 128 / 1e6)
# CUDA: the trial engine trained 462 crops of 384² per second (FPN-resnet34, bf16, an H200;
# benchmarks/README.md, GPU check).
CUDA_S_PER_MPX = 1 / (462 * 384 * 384 / 1e6)
EVAL_SHARE = 1 / 3  # a forward pass alone costs about a third of a training step

# CamVid-small's trials, which ranked configurations as longer training did (studies/camvid.yaml):
# 6 epochs of 46 steps at batch 8, on a 15-epoch LR schedule.
TRIAL_STEPS = 6 * 46
SCHEDULE_SPAN = 15 / 6
MIN_TRIAL_EPOCHS, MAX_TRIAL_EPOCHS = 2, 60
TARGET_TRIALS = 20  # the sampler's 8 random start-up trials, then 12 it steers
# CamVid-small's default recipe was still rising at 139 epochs and had flattened by 185
# (benchmarks/README.md): the final retrain should get about that many steps.
FINAL_STEPS = 150 * 46
SEARCH_FRACTION = 0.3  # studies/camvid.yaml's run.search_fraction, and why (see there)
MIN_BUDGET_H, MAX_BUDGET_H = 1, 8  # at least an hour: the final's export, TTA and INT8 take minutes; at most a night


@dataclass(frozen=True)
class Timing:
    epoch_s: float
    steps_per_epoch: int
    trial_epochs: int
    schedule_epochs: int
    trial_s: float
    budget_h: int
    search_s: float
    final_epochs: int  # what the final retrain gets in the rest of the budget, by the estimate
    trial_time_limit_s: int
    reasons: tuple[str, ...]


def duration(seconds: float) -> str:
    """A rough duration in words: '0.4 s', '12 s', '3.5 min', '2.1 h'."""
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def epochs_text(n: int) -> str:
    return f"about {n}" if n <= 10_000 else "over 10,000"


def epoch_seconds(*, cuda: bool, n_train: int, crop: int, n_val: int, image_hw: tuple[int, int]) -> float:
    rate = CUDA_S_PER_MPX if cuda else CPU_S_PER_MPX
    return rate * (n_train * crop * crop + EVAL_SHARE * n_val * image_hw[0] * image_hw[1]) / 1e6


def plan_timing(*, cuda: bool, n_train: int, n_val: int, crop: int, batch: int,
                image_hw: tuple[int, int]) -> Timing:
    epoch_s = epoch_seconds(cuda=cuda, n_train=n_train, crop=crop, n_val=n_val, image_hw=image_hw)
    steps = max(1, n_train // batch)
    epochs = min(MAX_TRIAL_EPOCHS, max(MIN_TRIAL_EPOCHS, math.ceil(TRIAL_STEPS / steps)))
    final_epochs = max(40, math.ceil(FINAL_STEPS / steps))
    need_s = max(TARGET_TRIALS * epochs * epoch_s / SEARCH_FRACTION, final_epochs * epoch_s / (1 - SEARCH_FRACTION))
    budget_h = min(MAX_BUDGET_H, max(MIN_BUDGET_H, math.ceil(need_s / 3600)))
    search_s = SEARCH_FRACTION * budget_h * 3600
    rate = (f"the {'CUDA' if cuda else 'CPU'} rate of {(CUDA_S_PER_MPX if cuda else CPU_S_PER_MPX):.3g} s per "
            f"megapixel measured in benchmarks/README.md ({'FPN-resnet34, bf16' if cuda else 'FPN-resnet18, one core'}")
    reasons = [f"one epoch ≈ {duration(epoch_s)}: {n_train} crops of {crop}² and a pass over {n_val} selection "
               f"images, at {rate}; other models and machines differ, up to 2.5× from day to day)",
               f"a trial trains {epochs} epochs ({epochs * steps} steps of batch {batch}): about the {TRIAL_STEPS} "
               f"steps of CamVid-small's 6-epoch trials, which ranked configurations as longer training did; its LR "
               f"schedule spans {round(SCHEDULE_SPAN * epochs)} epochs, as there (budget.trial_schedule_epochs)"]
    if TARGET_TRIALS * epochs * epoch_s > search_s:
        fit = max(1, int(search_s / (TARGET_TRIALS * epoch_s)))
        reasons.append(f"at most a {MAX_BUDGET_H} h night: {TARGET_TRIALS} trials of {epochs} epochs do not fit the "
                       f"search's share, so a trial trains {fit} epoch(s)")
        epochs = fit
    trial_s = epochs * epoch_s
    final = int((budget_h * 3600 - search_s) / epoch_s) if epoch_s > 0 else final_epochs
    reasons.append(f"suggested budget {budget_h} h: {TARGET_TRIALS} trials in the search's "
                   f"{SEARCH_FRACTION * 100:.0f} % (≈ {duration(trial_s)} each) and a final retrain of "
                   f"{epochs_text(final)} epochs in the rest (CamVid-small's default recipe gained until ~150 epochs "
                   f"of 46 steps); between {MIN_BUDGET_H} h and a {MAX_BUDGET_H} h night")
    limit = max(600, math.ceil(3 * trial_s / 60) * 60)
    return Timing(epoch_s, steps, epochs, max(epochs, round(SCHEDULE_SPAN * epochs)), trial_s, budget_h, search_s,
                  final, limit, tuple(reasons))
