"""Batch-1 latency: fixed thread count, warm-up, then the median of timed runs."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    warmup: int

    def as_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _stats(times: list[float], warmup: int) -> Latency:
    q = statistics.quantiles(times, n=10) if len(times) >= 2 else [times[0]] * 9
    return Latency(statistics.median(times), q[0], q[-1], len(times), warmup)


def measure(fn: Callable[[], object], *, runs: int, warmup: int = 5) -> Latency:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return _stats(times, warmup)


def measure_all(fns: dict[str, Callable[[], object]], *, runs: int, warmup: int = 5,
                pause_s: float = 0.5) -> dict[str, Latency]:
    """One variant after the other, each with its own warm-up, with a pause between them.

    Not interleaved: on a 2-core machine, torch (2 OpenMP threads) ran several times slower for
    a few seconds after each ONNX Runtime call in the same process, so interleaved rounds would
    time torch against ORT's leftovers. The p10/p90 in the report show how noisy a run was.
    """
    out: dict[str, Latency] = {}
    for key, fn in fns.items():
        time.sleep(pause_s)
        out[key] = measure(fn, runs=runs, warmup=warmup)
    return out
