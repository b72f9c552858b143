"""Optimizer and per-step learning-rate schedule from a trial config."""

from __future__ import annotations

import math

import torch

from automl.trial_config import OptimizerSpec, ScheduleSpec


def build_optimizer(params, spec: OptimizerSpec) -> torch.optim.Optimizer:
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov and spec.momentum > 0,
                               weight_decay=spec.weight_decay)
    cls = torch.optim.AdamW if spec.name == "adamw" else torch.optim.Adam
    return cls(params, lr=spec.lr, weight_decay=spec.weight_decay)


def build_scheduler(opt: torch.optim.Optimizer, spec: ScheduleSpec, total_steps: int):
    """Stepped once per optimizer step. Linear warm-up, then cosine/poly/constant decay."""
    total_steps = max(1, total_steps)
    if spec.name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total_steps,
            pct_start=spec.warmup_frac if spec.warmup_frac > 0 else 0.25)
    warm = int(spec.warmup_frac * total_steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        if spec.name == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if spec.name == "poly":
            return (1 - progress) ** spec.power
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
