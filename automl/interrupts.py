"""Hold SIGINT/SIGTERM back while Optuna changes a trial's state, and let them in where the
objective can record why the trial ended.

Python raises a signal's KeyboardInterrupt wherever the main thread happens to be. Landing in
Optuna's ``ask`` after the trial row exists (before the objective has recorded its owner), it
left the trial RUNNING with no owner: no pid check could reap it, no heartbeat had started, and
a resumed study waited for it forever. Landing in ``tell``, it lost a trained trial.

``held()`` wraps a whole ``study.optimize``: a signal is remembered, and raised inside
``delivered()`` (the objective's guarded body: the trial ends FAILED with its reason) or as soon
as ``held()`` ends. A second signal more than ``FORCE_AFTER_S`` after the first is raised at
once, so a storage call that hangs cannot make the process deaf; sooner than that it is the same
stop twice (Ctrl-C reaches a worker from the terminal and from ``automl search`` at once).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
FORCE_AFTER_S = 2.0


class _Held:
    def __init__(self) -> None:
        self.previous = {s: signal.getsignal(s) for s in SIGNALS}
        self.pending: int | None = None
        self.first_at = 0.0

    def handler(self, signum, frame) -> None:
        if self.pending is None:
            self.pending, self.first_at = signum, time.monotonic()
        elif time.monotonic() - self.first_at > FORCE_AFTER_S:
            self.pending = None
            self.deliver(signum)

    def install(self) -> None:
        for s in SIGNALS:
            signal.signal(s, self.handler)

    def restore(self) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)

    def deliver(self, signum: int) -> None:
        """What the signal would have done had it not been held (with the previous handlers in place)."""
        handler = self.previous[signum]
        if callable(handler):
            handler(signum, None)  # raises KeyboardInterrupt (Python's SIGINT handler, the CLI's SIGTERM one)
        else:
            signal.signal(signum, handler)
            os.kill(os.getpid(), signum)  # default action (terminate) or ignored, as if never held


_stack: list[_Held] = []


@contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM for the duration (main thread only; elsewhere signals never land).
    Nested, the inner hold passes a signal on to the outer one when it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    state = _Held()
    state.install()
    _stack.append(state)
    try:
        yield
    finally:
        _stack.remove(state)
        state.restore()
        if state.pending is not None:
            state.deliver(state.pending)


@contextmanager
def delivered() -> Iterator[None]:
    """Signals act as they did before the innermost hold, for the duration; one held before is
    raised here, at the start."""
    state = _stack[-1] if _stack else None
    if state is None:
        yield
        return
    state.restore()
    try:
        if state.pending is not None:
            signum, state.pending = state.pending, None
            state.deliver(signum)
        yield
    finally:
        state.install()


# Set by the CLI's handler each time SIGINT/SIGTERM raises its KeyboardInterrupt. The exception
# lands wherever the main thread is, and code that is not ours (a library's broad ``except``, a
# thread pool's shutdown) can swallow it: ``raise_if_requested`` raises it again at the next
# point where stopping is safe, so a stop is never lost, only late.
_requested = False


def request_stop() -> None:
    global _requested
    _requested = True


def raise_if_requested() -> None:
    """KeyboardInterrupt if a stop was requested and not yet acted on (then forgotten)."""
    if _requested:
        stop_handled()
        raise KeyboardInterrupt


def stop_handled() -> None:
    """The stop reached the top (the CLI is exiting): nothing left to raise again."""
    global _requested
    _requested = False
