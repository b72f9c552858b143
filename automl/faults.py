"""A test hook: the process signals itself at a named point, to hit a narrow window on purpose
(tests/test_fault_injection.py). Off unless ``AUTOML_FAULT_AT=<point>[:<n>]`` is set: the n-th
time (default 1st) this process passes ``point``, it sends itself ``AUTOML_FAULT_SIGNAL``
(KILL, default, or TERM, INT)."""

from __future__ import annotations

import os
import signal

_AT = os.environ.get("AUTOML_FAULT_AT", "")
_NAME, _, _NTH = _AT.partition(":")
_passed = 0


def point(name: str) -> None:
    global _passed
    if not _AT or name != _NAME:
        return
    _passed += 1
    if _passed == int(_NTH or 1):
        os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get("AUTOML_FAULT_SIGNAL", "KILL").upper()))
