"""Write a folder so that readers see the old one or the complete new one, never half of it.

Temporary folders are made next to their target (under ``runs/``, not in the system's temp
folder) and carry their owner in their name: ``.<name>~tmp~<host>~<pid>~<random>``, and
``.<name>~old~<host>~<pid>`` for the folder a swap moves aside. A process killed outright
(SIGKILL, power loss) cannot clean up after itself; the next one to write there removes what
belongs to no live process of this host (:func:`clean_leftovers`), and undoes a swap the kill cut
in half.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from automl import faults, interrupts
from automl.owner import HOST, dead_here

log = logging.getLogger(__name__)
_LEFTOVER = re.compile(r"^\.(?P<name>[^~]+)~(?P<kind>tmp|old)~(?P<host>[^~]+)~(?P<pid>\d+)(?:~[^~]*)?$")


def _tag(kind: str) -> str:
    return f"~{kind}~{HOST}~{os.getpid()}"


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


def swap_in(src: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` (if any) by ``src``: two renames, undone by :func:`clean_leftovers` if
    the process dies between them."""
    if not out_dir.exists():
        os.replace(src, out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}{_tag('old')}")
    shutil.rmtree(old, ignore_errors=True)
    with interrupts.held():  # a Ctrl-C lands once the swap is done, not between the renames
        os.replace(out_dir, old)
        faults.point("swap")
        os.replace(src, out_dir)
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def owned_tempdir(parent: Path, label: str) -> Iterator[Path]:
    """A temporary folder in ``parent``, removed on exit (or by a later :func:`clean_leftovers`
    if this process is killed)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{label}{_tag('tmp')}~", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def library_temp_in(folder: Path) -> Iterator[None]:
    """Send the temporary files that libraries make through ``tempfile`` into ``folder`` (ONNX
    Runtime's quantization writes model-sized ones), so a kill leaves them where
    :func:`clean_leftovers` finds them. For a single-threaded stretch: the setting is global."""
    previous = tempfile.tempdir
    tempfile.tempdir = str(Path(folder).resolve())  # relative, it breaks ONNX Runtime's pre-processing
    try:
        yield
    finally:
        tempfile.tempdir = previous


def clean_leftovers(parent: Path) -> list[str]:
    """Remove the temporary folders in ``parent`` of processes of this host that are gone; put back
    a folder whose swap was cut between its two renames. Returns the names handled."""
    try:
        entries = list(Path(parent).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    done = []
    for path in entries:
        m = _LEFTOVER.match(path.name)
        if m is None or not dead_here(m["host"], int(m["pid"])):
            continue
        target = path.with_name(m["name"])
        if m["kind"] == "old" and not target.exists():
            os.replace(path, target)  # the complete folder the new one was to replace
            log.info("%s: restored after an interrupted swap", target)
        else:
            shutil.rmtree(path, ignore_errors=True)
        done.append(path.name)
    return done


@contextmanager
def atomic_dir(out_dir: Path, *, keep_if: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``out_dir`` by renames.

    ``keep_if(out_dir)`` true at the end keeps the folder that is there and drops the new one:
    for writers racing to make the same content (workers generating the same data), the first
    rename wins and the others see its complete folder.
    """
    out_dir = Path(out_dir)
    clean_leftovers(out_dir.parent)
    with owned_tempdir(out_dir.parent, out_dir.name) as tmp:
        yield tmp
        _shareable(tmp)
        if keep_if is None:
            swap_in(tmp, out_dir)
            return
        # Racing writers of the same content: a complete folder is never moved aside, since a
        # reader would find no folder at all between the two renames of a swap.
        if keep_if(out_dir):
            return
        try:
            if not out_dir.exists():
                os.replace(tmp, out_dir)  # fails if another writer's folder landed meanwhile
            elif not keep_if(out_dir):  # check again: it may have landed since the first look
                swap_in(tmp, out_dir)  # an outdated folder: replace it
        except OSError:  # another writer's rename came first
            if not keep_if(out_dir):
                raise
