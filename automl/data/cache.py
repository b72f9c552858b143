"""The decoded dataset, cached on local disk once per machine and memory-mapped by every process.

Decoding PNGs is the cost of every start (a search, each worker, the final stage, audit,
inspect), and an in-memory copy per process is the cost of every worker. The cache keeps one
``.npy`` file per image and per mask (images vary in size: one record each, never one stacked
array) in ``<cache dir>/<key>/``, where the key names the data folder, its layout, the label map
and :data:`DECODE_VERSION`. Each record is keyed by its files' path, size and modification time:
a changed or added file is decoded again, alone, and a removed one is dropped.

Readers get :class:`ArraySeq` items: each ``np.load(..., mmap_mode="c")`` at the moment it is
used, so a process holds no copy of the dataset and the operating system's page cache holds
one for all of them; a training batch reads only the pages it touches, so a dataset larger than
memory trains. Copy-on-write maps (``"c"``) are writable in memory and never change the file.

A build holds an exclusive lock on ``.lock`` in the key's folder (``fcntl.flock``), so two
processes that start together do not decode twice: the second waits, then finds every record.
Records are written into an owned temporary folder (:mod:`automl.atomic`) and renamed into
place, and the index last, so a process killed mid-build leaves complete records and an index
that names only those. Structural damage (a missing or truncated record, a header that does not
match the index, an unreadable index) is found when the cache is opened: the record is rebuilt
with a warning, never used. A bit flipped inside a record's pixels is not looked for: that
would mean reading the whole dataset at every start.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from automl.atomic import clean_leftovers, owned_tempdir
from automl.terminal import shown_path

log = logging.getLogger(__name__)

# Bump when the decoding rules (automl.data.decode, automl.data.label_map) change what a file
# decodes to: every cache built before is then a different key, never reused.
DECODE_VERSION = 1
INDEX = "index.json"
LOCK = ".lock"


class ArraySeq(Sequence):
    """A sequence of arrays, each kept either in memory or as an ``.npy`` file mapped on access.

    Concatenation (``+``) and :meth:`take` keep files as files, so a split carved from another
    (:mod:`automl.data.split`) or train + val (the final's trainval) never loads a record."""

    def __init__(self, items: Sequence[np.ndarray | Path]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ArraySeq(self.items[i])
        item = self.items[i]
        return np.load(item, mmap_mode="c") if isinstance(item, Path) else item

    def take(self, indices: Sequence[int]) -> ArraySeq:
        return ArraySeq([self.items[i] for i in indices])

    def __add__(self, other) -> ArraySeq:
        return ArraySeq(self.items + (other.items if isinstance(other, ArraySeq) else list(other)))

    def __radd__(self, other) -> ArraySeq:
        return ArraySeq(list(other) + self.items)

    @property
    def on_disk(self) -> int:
        """How many items are mapped files, not arrays in memory."""
        return sum(isinstance(x, Path) for x in self.items)


@dataclass(frozen=True)
class CacheSpec:
    """Where the cache lives, and the decoded size from which it is used (0: always)."""

    base: Path
    from_bytes: int = 0


def record_shape(path: Path) -> tuple[int, ...]:
    """A record's array shape, from its header alone."""
    return tuple(_header(path)[0])


def take(seq: Sequence, indices: Sequence[int]) -> Sequence:
    """``seq``'s items at ``indices``: an ArraySeq stays one (its files stay unread)."""
    return seq.take(indices) if isinstance(seq, ArraySeq) else [seq[i] for i in indices]


def signature(path: Path) -> list[int]:
    """What a record is keyed by, besides the path: size and modification time (ns)."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def cache_key(root: Path, layout: str, label_map: dict | None) -> str:
    spec = {"root": str(Path(root).resolve()), "layout": layout, "label_map": label_map, "version": DECODE_VERSION}
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class CacheReport:
    """What opening the cache did, for the start-up log and `automl status`."""

    path: Path
    records: int = 0
    reused: int = 0
    built: int = 0
    rebuilt: list[str] = field(default_factory=list)  # records found damaged (why)
    dropped: int = 0  # records of files no longer in the folder
    bytes: int = 0

    def as_dict(self) -> dict:
        return {"path": shown_path(self.path), "records": self.records, "reused": self.reused, "built": self.built,
                "rebuilt": len(self.rebuilt), "dropped": self.dropped, "gb": round(self.bytes / 1e9, 3)}

    def line(self) -> str:
        how = ("reused" if self.built == 0 else "built" if self.reused == 0 else
               f"reused {self.reused}, decoded {self.built}")
        return (f"data cache {shown_path(self.path)} ({self.records} image/mask pairs, {self.bytes / 1e9:.2f} GB): {how}"
                + (f"; {len(self.rebuilt)} damaged record(s) rebuilt" if self.rebuilt else ""))


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # another process building the same cache: wait for it
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _record_name(pair_id: str) -> str:
    return hashlib.sha1(pair_id.encode()).hexdigest()[:20]


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of an .npy file, from its header alone."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        return shape, dtype, f.tell()


def _damage(path: Path, shape: list[int], dtype: str) -> str | None:
    """Why the record at ``path`` cannot be used as ``shape``/``dtype``, or None."""
    try:
        found, found_dtype, offset = _header(path)
    except FileNotFoundError:
        return "missing"
    except Exception as exc:  # noqa: BLE001 - any unreadable header is damage
        return f"unreadable header ({type(exc).__name__})"
    if list(found) != list(shape) or str(found_dtype) != dtype:
        return f"header {found} {found_dtype}, index {tuple(shape)} {dtype}"
    expected = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    size = path.stat().st_size
    if size != expected:
        return f"{size} bytes, {expected} expected (truncated)" if size < expected else f"{size} bytes, {expected} expected"
    return None


@dataclass(frozen=True)
class Entry:
    """One image/mask pair to cache: its id (``split/stem``), files and decoder."""

    pair_id: str
    image: Path
    mask: Path


Decoder = Callable[[Entry], "tuple[np.ndarray | None, np.ndarray | None, object]"]


class DecodedCache:
    """The cache folder for one dataset (see the module docstring)."""

    def __init__(self, base: Path, root: Path, layout: str, label_map: dict | None):
        self.folder = Path(base) / cache_key(root, layout, label_map)
        self.root = Path(root)

    def _read_index(self, report: CacheReport) -> dict:
        path = self.folder / INDEX
        if not path.is_file():
            return {}
        try:
            index = json.loads(path.read_text())
            if index.get("version") != DECODE_VERSION or not isinstance(index.get("records"), dict):
                raise ValueError("another version")
            return index["records"]
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("data cache index %s is unreadable (%s): every record is rebuilt", shown_path(path), exc)
            report.rebuilt.append(f"index: {exc}")
            return {}

    def _usable(self, rec: dict, entry: Entry, report: CacheReport) -> bool:
        if rec.get("image_sig") != signature(entry.image) or rec.get("mask_sig") != signature(entry.mask):
            return False  # the file changed: decoded again, no damage
        for kind in ("image", "mask"):
            why = _damage(self.folder / rec[kind], rec[f"{kind}_shape"], rec[f"{kind}_dtype"])
            if why is not None:
                log.warning("data cache record %s (%s) is damaged: %s; rebuilt from %s", rec[kind], entry.pair_id,
                            why, getattr(entry, kind).name)
                report.rebuilt.append(f"{entry.pair_id}: {why}")
                return False
        return True

    def open(self, entries: list[Entry], decode: Decoder,
             map_fn: Callable = map) -> tuple[dict[str, tuple], CacheReport]:
        """Every entry as (image, mask, extra): the record files where the cache holds them, else
        decoded by ``decode(entry) -> (image, mask, extra)`` (through ``map_fn``, e.g. a thread
        pool's) and written when both decoded, then given as their record files too; a pair
        that did not decode comes back as decoded. The ``extra`` of a reused record is None.
        Holds the lock for the whole open."""
        report = CacheReport(self.folder)
        out: dict[str, tuple] = {}
        with _locked(self.folder):
            clean_leftovers(self.folder)
            records = self._read_index(report)
            wanted = {e.pair_id for e in entries}
            stale = [pid for pid in records if pid not in wanted]
            for pid in stale:
                for kind in ("image", "mask"):
                    (self.folder / records[pid][kind]).unlink(missing_ok=True)
                del records[pid]
            report.dropped = len(stale)
            todo = []
            for e in entries:
                rec = records.get(e.pair_id)
                if rec is not None and self._usable(rec, e, report):
                    out[e.pair_id] = (self.folder / rec["image"], self.folder / rec["mask"], None)
                    report.reused += 1
                else:
                    records.pop(e.pair_id, None)
                    todo.append(e)
            if todo:
                with owned_tempdir(self.folder, "records") as tmp:
                    for e, (image, mask, extra) in zip(todo, map_fn(decode, todo)):
                        out[e.pair_id] = (image, mask, extra)
                        if image is None or mask is None:
                            continue  # a problem the caller reports; nothing cached
                        records[e.pair_id] = self._write(tmp, e, image, mask)
                        out[e.pair_id] = (self.folder / records[e.pair_id]["image"],
                                          self.folder / records[e.pair_id]["mask"], extra)
                        report.built += 1
                    self._write_index(tmp, records)
            elif stale or report.rebuilt:
                with owned_tempdir(self.folder, "records") as tmp:
                    self._write_index(tmp, records)
        report.records = len(records)
        report.bytes = sum(rec["bytes"] for rec in records.values())
        return out, report

    def _write(self, tmp: Path, e: Entry, image: np.ndarray, mask: np.ndarray) -> dict:
        name = _record_name(e.pair_id)
        rec = {"image_sig": signature(e.image), "mask_sig": signature(e.mask), "bytes": image.nbytes + mask.nbytes}
        for kind, arr in (("image", image), ("mask", mask)):
            fname = f"{name}.{kind}.npy"
            np.save(tmp / fname, np.ascontiguousarray(arr))
            os.replace(tmp / fname, self.folder / fname)  # the record, whole, before the index names it
            rec.update({kind: fname, f"{kind}_shape": list(arr.shape), f"{kind}_dtype": str(arr.dtype)})
        return rec

    def _write_index(self, tmp: Path, records: dict) -> None:
        (tmp / INDEX).write_text(json.dumps({"version": DECODE_VERSION, "root": str(self.root.resolve()),
                                             "records": records}))
        os.replace(tmp / INDEX, self.folder / INDEX)


def decoded_bytes(sizes: Sequence[tuple[int, int]], n: int) -> int:
    """Decoded size of ``n`` pairs (RGB image + one-byte mask per pixel), from a sample of their
    (height, width)."""
    if not sizes or n == 0:
        return 0
    return int(4 * n * sum(h * w for h, w in sizes) / len(sizes))
