"""Write a folder so that readers see the old one or the complete new one, never half of it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    """The process umask (reading it means setting it: put it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _shareable(root: Path) -> None:
    """mkdtemp creates owner-only (0700) folders; give them what a plain mkdir would."""
    mode = 0o777 & ~_umask()
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        d.chmod(mode)


def _swap_in(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        old = out_dir.with_name(out_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)


@contextmanager
def atomic_dir(out_dir: Path, *, keep_if: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``out_dir`` by renames.

    ``keep_if(out_dir)`` true at the end keeps the folder that is there and drops the new one:
    for writers racing to make the same content (workers generating the same data), the first
    rename wins and the others see its complete folder.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
        _shareable(tmp)
        if keep_if is None:
            _swap_in(tmp, out_dir)
            return
        # Racing writers of the same content: a complete folder is never moved aside, since a
        # reader would find no folder at all between the two renames of a swap.
        if keep_if(out_dir):
            return
        try:
            if not out_dir.exists():
                os.replace(tmp, out_dir)  # fails if another writer's folder landed meanwhile
            elif not keep_if(out_dir):  # check again: it may have landed since the first look
                _swap_in(tmp, out_dir)  # an outdated folder: replace it
        except OSError:  # another writer's rename came first
            if not keep_if(out_dir):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
