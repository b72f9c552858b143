"""A test hook: the process signals itself at a named point, to hit a narrow window on purpose
(tests/test_fault_injection.py). Off unless ``AUTOML_FAULT_AT=<point>[:<n>]`` is set: the n-th
time (default 1st) this process passes ``point``, it sends itself ``AUTOML_FAULT_SIGNAL`` (KILL,
default, TERM or INT), at once or ``AUTOML_FAULT_DELAY`` seconds later (from a timer thread: the
signal then lands wherever the process has got to)."""

from __future__ import annotations

import os
import signal
import threading

_AT = os.environ.get("AUTOML_FAULT_AT", "")
_NAME, _, _NTH = _AT.partition(":")
_passed = 0


def point(name: str) -> None:
    global _passed
    if not _AT or name != _NAME:
        return
    _passed += 1
    if _passed != int(_NTH or 1):
        return
    signum = getattr(signal, "SIG" + os.environ.get("AUTOML_FAULT_SIGNAL", "KILL").upper())
    delay = float(os.environ.get("AUTOML_FAULT_DELAY", "0"))
    if delay <= 0:
        os.kill(os.getpid(), signum)
        return
    timer = threading.Timer(delay, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()
