"""Text from outside (paths, file names, YAML keys, exception messages) made safe to show.

A file name may hold ``[/b]`` or ``[bold red]``, which rich would read as markup (a crash, or the
text silently dropped), or an escape sequence such as ``\\x1b[31m``, which would reach the
terminal raw (recolour it, move the cursor, retitle the window). Control characters are shown as
Python escapes instead, and ``markup_safe`` also escapes rich's markup.
"""

from __future__ import annotations

import re

from rich.markup import escape

# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides that can make
# a name read differently from what it is.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: object) -> str:
    """``text`` with every control character written as its escape (``\\x1b``, ``\\r``)."""
    return _UNSAFE.sub(lambda m: repr(m.group())[1:-1], str(text))


def markup_safe(text: object) -> str:
    """``visible(text)``, escaped to sit inside a rich markup string as plain text."""
    return escape(visible(text))


def shown_path(path: object) -> str:
    """A path for logs and the study: relative to the working directory when under it, else with
    the home folder written ``~`` (a user name does not belong in a shared study)."""
    import os
    from pathlib import Path

    p = Path(str(path))
    try:
        return visible(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        home = str(Path.home())
        s = str(p)
        return visible("~" + s[len(home):] if home not in ("", "/") and s.startswith(home + os.sep) else s)
