"""Inference latency at batch 1 on the run's device (median of timed runs after warm-up).

Latency and size depend only on architecture × encoder × depth × head × input size × device,
not on the trained weights, so each combination is measured once and cached in
``runs/<study>/latency_cache.json``. The key also holds the torch version, the thread count and
the processor, so a cache copied to another machine or upgraded install is never reused.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from automl.trial.engine import Runtime
from automl.trial_config import ModelSpec


@torch.no_grad()
def measure_latency_ms(model: nn.Module, size: tuple[int, int], runtime: Runtime, *,
                       warmup: int = 2, runs: int = 7) -> float:
    """The fastest of ``runs`` timed forward passes: on a machine shared with other trials the
    minimum is the figure least disturbed by them, and this number is cached for the whole study.
    (The final stage reports medians over 30+ runs on an idle machine.)"""
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
    return min(times)


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what the platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name(runtime: Runtime) -> str:
    if runtime.device.type == "cuda":
        return torch.cuda.get_device_name(runtime.device)
    return f"{cpu_model_name()} ({torch.get_num_threads()} threads)"


class LatencyCache:
    def __init__(self, path: Path | None):
        self.path = path
        self.memory: dict[str, dict] = {}

    def key(self, spec: ModelSpec, num_classes: int, size: tuple[int, int], runtime: Runtime) -> str:
        return "|".join([spec.arch, spec.encoder, f"depth{spec.encoder_depth}", f"aux{int(spec.aux_head)}",
                         f"classes{num_classes}", f"{size[0]}x{size[1]}", device_name(runtime),
                         str(runtime.amp_dtype), f"torch{torch.__version__}"])

    def _read(self) -> dict:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def get(self, key: str) -> dict | None:
        if key not in self.memory:
            found = self._read().get(key)
            if found is not None:
                self.memory[key] = found
        return self.memory.get(key)

    def put(self, key: str, value: dict) -> None:
        self.memory[key] = value
        if self.path is None:
            return
        merged = {**self._read(), key: value}  # other workers may have added entries meanwhile
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".latency.")
        with os.fdopen(fd, "w") as f:
            json.dump(merged, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


def measure_model(spec: ModelSpec, num_classes: int, size: tuple[int, int], runtime: Runtime,
                  cache: LatencyCache) -> dict:
    """{"params_m", "latency_ms"} for an untrained model of this spec, from the cache if known."""
    from automl.trial.model import build_model, count_params

    key = cache.key(spec, num_classes, size, runtime)
    found = cache.get(key)
    if found is None:
        model = build_model(spec, num_classes).to(runtime.device)
        if runtime.channels_last:
            model = model.to(memory_format=torch.channels_last)
        found = {"params_m": round(count_params(model) / 1e6, 4),
                 "latency_ms": round(measure_latency_ms(model, size, runtime), 2)}
        cache.put(key, found)
    return found
