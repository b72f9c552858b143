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


WARMUP_RUNS = 5
MIN_RUNS = 5  # the fewest timed runs a median is taken from, whatever the time box
BUNDLE_WRITE_S = 5.0  # saving weights, ONNX files, the report and its plot: kept free of latency timing


def measure(fn: Callable[[], object], *, runs: int, warmup: int = 5, max_s: float | None = None) -> Latency:
    """``runs`` timed calls after ``warmup`` untimed ones; with ``max_s``, fewer once the
    calls (warm-up included) have taken that long, but never fewer than :data:`MIN_RUNS`."""
    t_start = time.perf_counter()
    for _ in range(warmup):
        fn()
    times: list[float] = []
    for _ in range(runs):
        if max_s is not None and len(times) >= MIN_RUNS and time.perf_counter() - t_start >= max_s:
            break
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return _stats(times, warmup)


def measure_all(fns: dict[str, Callable[[], object]], *, runs: int, warmup: int = 5,
                pause_s: float = 0.5, max_s: float | None = None,
                optional: dict[str, float] | None = None) -> dict[str, Latency]:
    """One timing after the other, in ``fns``' order, each with its own warm-up, with a pause
    between them; ``max_s``: the time for all of them, each getting an even share of what is left
    when it starts (see :func:`measure`).

    ``optional``: timings that may be left out, by the seconds one call is expected to take. With
    ``max_s``, such a timing starts only if its fewest calls (warm-up and :data:`MIN_RUNS`) fit in
    the time left; the others always run. Left-out timings are absent from the result.

    Not interleaved: on a 2-core machine, torch (2 OpenMP threads) ran several times slower for
    a few seconds after each ONNX Runtime call in the same process, so interleaved rounds would
    time torch against ORT's leftovers. The p10/p90 in the report show how noisy a run was.
    """
    out: dict[str, Latency] = {}
    optional = optional or {}
    end = None if max_s is None else time.perf_counter() + max_s
    for k, (key, fn) in enumerate(fns.items()):
        left = None if end is None else end - time.perf_counter()
        if left is not None and key in optional and (warmup + MIN_RUNS) * optional[key] + pause_s > left:
            continue
        time.sleep(pause_s)
        share = None if left is None else max(0.0, left / (len(fns) - k) - pause_s)
        out[key] = measure(fn, runs=runs, warmup=warmup, max_s=share)
    return out
