"""A per-trial wall-clock limit that also stops a trial stuck inside one call.

The training loop checks its deadline between steps; this alarm covers the rest (a hung data
loader, a stuck evaluation). SIGALRM works in the main thread only, where Optuna runs the
objective when ``n_jobs=1``; elsewhere the loop's own checks remain.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from automl.trial.engine import TrialTimeout


@contextmanager
def time_limit(seconds: float | None):
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise TrialTimeout(f"time limit of {seconds:.0f} s reached")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
