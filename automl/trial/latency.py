"""Inference latency at batch 1 on the run's device (median of timed runs after warm-up)."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from automl.trial.engine import Runtime


@torch.no_grad()
def measure_latency_ms(model: nn.Module, size: tuple[int, int], runtime: Runtime, *,
                       warmup: int = 2, runs: int = 7) -> float:
    model.eval()
    x = torch.randn(1, 3, *size, device=runtime.device)
    if runtime.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(warmup + runs):
        if runtime.device.type == "cuda":
            torch.cuda.synchronize(runtime.device)
        t0 = time.perf_counter()
        with runtime.autocast():
            model(x)
        if runtime.device.type == "cuda":
            torch.cuda.synchronize(runtime.device)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)
