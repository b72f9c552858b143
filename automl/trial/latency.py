"""Inference latency at batch 1 on the run's device (median of timed runs after warm-up).

Latency and size depend only on architecture × encoder × depth × head × input size × device,
not on the trained weights, so each combination is measured once and cached in
``runs/<study>/latency_cache.json``. The key also holds the processor, the thread count, the
torch / segmentation-models-pytorch / timm versions and a hash of our model-building code, so a
cache copied to another machine, or kept across an upgrade, is never reused.

On a CPU the measurement uses a fixed thread count (``final.latency_threads``, as the final
report does), not the process's own: a constraint must not pass with ``automl search`` on all
cores and fail under ``--workers 2``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

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


def device_name(runtime: Runtime, threads: int | None = None) -> str:
    if runtime.device.type == "cuda":
        return torch.cuda.get_device_name(runtime.device)
    return f"{cpu_model_name()} ({threads or torch.get_num_threads()} threads)"


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, then put the process's count back."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def cpu_threads(runtime: Runtime, threads: int | None) -> Iterator[None]:
    """:func:`torch_threads` on a CPU; unchanged on CUDA or for None."""
    if runtime.device.type == "cuda" or threads is None:
        yield
        return
    with torch_threads(threads):
        yield


@lru_cache(maxsize=1)
def _software() -> str:
    from importlib.metadata import version

    from automl.trial import model as model_code

    code = hashlib.sha1(Path(model_code.__file__).read_bytes()).hexdigest()[:10]
    return f"torch{torch.__version__}|smp{version('segmentation_models_pytorch')}|timm{version('timm')}|model{code}"


class LatencyCache:
    """``threads``: CPU threads for each measurement (None: the process's own)."""

    def __init__(self, path: Path | None, threads: int | None = None):
        self.path, self.threads = path, threads
        self.memory: dict[str, dict] = {}

    def device(self, runtime: Runtime) -> str:
        return device_name(runtime, self.threads)

    def key(self, spec: ModelSpec, num_classes: int, size: tuple[int, int], runtime: Runtime) -> str:
        return "|".join([spec.arch, spec.encoder, f"depth{spec.encoder_depth}", f"aux{int(spec.aux_head)}",
                         f"classes{num_classes}", f"{size[0]}x{size[1]}", self.device(runtime),
                         str(runtime.amp_dtype), f"cl{int(runtime.channels_last)}", _software()])

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
        with cpu_threads(runtime, cache.threads):
            latency = measure_latency_ms(model, size, runtime)
        found = {"params_m": round(count_params(model) / 1e6, 4), "latency_ms": round(latency, 2)}
        cache.put(key, found)
    return found
