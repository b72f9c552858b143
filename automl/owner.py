"""Who owns a trial or a temporary folder: a process on a host. Only an owner on *this* host can
be checked (by pid); one elsewhere is left to the storage's heartbeat."""

from __future__ import annotations

import os
import socket

HOST = socket.gethostname()


def this_process() -> str:
    """``host:pid``, as trials record their worker."""
    return f"{HOST}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def dead_here(host: str, pid: int) -> bool:
    """True only for a process of this host that is gone (a pid reused since is taken for alive:
    its leftovers stay, nothing live is ever removed)."""
    return host == HOST and pid != os.getpid() and not pid_alive(pid)
