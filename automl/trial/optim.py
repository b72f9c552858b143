"""Optimizer and per-step learning-rate schedule from a trial config.

Every schedule is a ``LambdaLR`` whose length is read at each step from a :class:`Span`, so a
run that re-plans its length from measured time (``automl run``'s final retrain, equal-time
trials) stretches or shortens its schedule in place.
"""

from __future__ import annotations

import math

import torch

from automl.trial_config import OptimizerSpec, ScheduleSpec

# torch.optim.lr_scheduler.OneCycleLR's defaults, which the one-cycle schedule here reproduces
ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 25.0, 1e4
ONECYCLE_MOMENTUM = (0.85, 0.95)  # (base, max): momentum (or Adam's beta1) falls while the LR rises


def build_optimizer(params, spec: OptimizerSpec) -> torch.optim.Optimizer:
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov and spec.momentum > 0,
                               weight_decay=spec.weight_decay)
    cls = torch.optim.AdamW if spec.name == "adamw" else torch.optim.Adam
    return cls(params, lr=spec.lr, weight_decay=spec.weight_decay)


class Span:
    """The schedule's length in optimizer steps; may be changed while the schedule runs."""

    def __init__(self, total_steps: int):
        self.total_steps = total_steps

    @property
    def steps(self) -> int:
        return max(1, int(self.total_steps))


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _onecycle_phase(step: int, total: int, pct_start: float) -> tuple[int, float]:
    """(phase, progress in it) of OneCycleLR's two phases, computed as torch does."""
    rise_end = float(pct_start * total) - 1
    if step <= rise_end:
        return 0, step / rise_end if rise_end else 0.0
    return 1, (step - rise_end) / max(1e-12, (total - 1) - rise_end)


class PlannedLR(torch.optim.lr_scheduler.LambdaLR):
    """LambdaLR over a :class:`Span`; for one-cycle it also cycles momentum, as OneCycleLR does."""

    def __init__(self, opt: torch.optim.Optimizer, factor, span: Span, momentum=None):
        self.span, self._momentum = span, momentum
        self._beta1 = "betas" in opt.defaults
        super().__init__(opt, factor)

    def step(self, epoch=None):  # noqa: D102 - LambdaLR.step, then the momentum for the new step
        super().step(epoch)
        if self._momentum is not None:
            m = self._momentum(self.last_epoch)
            for group in self.optimizer.param_groups:
                if self._beta1:
                    group["betas"] = (m, *group["betas"][1:])
                else:
                    group["momentum"] = m


def build_scheduler(opt: torch.optim.Optimizer, spec: ScheduleSpec, total_steps: int | Span) -> PlannedLR:
    """Stepped once per optimizer step. Linear warm-up, then cosine/poly/constant decay; or one-cycle
    (OneCycleLR's cosine rise and fall, its momentum cycle included). ``total_steps``: a fixed
    length, or a :class:`Span` the caller may change later."""
    span = total_steps if isinstance(total_steps, Span) else Span(total_steps)
    if spec.name == "onecycle":
        pct = spec.warmup_frac if spec.warmup_frac > 0 else 0.25
        lo, hi = 1 / ONECYCLE_DIV, 1 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)

        def onecycle(step: int) -> float:
            phase, p = _onecycle_phase(step, span.steps, pct)
            return _cos(lo, 1.0, p) if phase == 0 else _cos(1.0, hi, p)

        def momentum(step: int) -> float:
            phase, p = _onecycle_phase(step, span.steps, pct)
            base, top = ONECYCLE_MOMENTUM
            return _cos(top, base, p) if phase == 0 else _cos(base, top, p)

        return PlannedLR(opt, onecycle, span, momentum)

    def factor(step: int) -> float:
        total = span.steps
        warm = int(spec.warmup_frac * total)
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        if spec.name == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if spec.name == "poly":
            return (1 - progress) ** spec.power
        return 1.0

    return PlannedLR(opt, factor, span)
