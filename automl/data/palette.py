"""A dataset's palette file, which names its classes: ``classes.txt`` (one name per line),
``labelmap.txt`` (Pascal VOC and CVAT exports: ``name:r,g,b:parts:actions``), or a CSV of
``name,r,g,b`` (CamVid's ``class_dict.csv``; with or without a header).

Only the dataset folder's top level is searched. Two palette files are one too many: which one
names the classes would be a guess, so the error names both.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from automl.config import colour_text
from automl.errors import DataError
from automl.terminal import visible

# Entries with these names (any case) mark pixels to ignore, not a class.
VOID_NAMES = frozenset({"void", "unlabelled", "unlabeled", "ignore", "ignored", "__ignore__"})


def is_void_name(name: str) -> bool:
    return name.strip().lower() in VOID_NAMES


@dataclass(frozen=True)
class PaletteEntry:
    name: str
    colour: str | None  # "#rrggbb"; None in classes.txt


@dataclass(frozen=True)
class Palette:
    path: Path
    format: str  # a key of FORMATS
    entries: tuple[PaletteEntry, ...]

    @property
    def has_colours(self) -> bool:
        return all(e.colour is not None for e in self.entries)


class NotAPalette(ValueError):
    """The file is not in the format its name suggests; the message says where."""


def _rgb(fields: list[str], where: str) -> str:
    try:
        rgb = [int(f.strip()) for f in fields]
    except ValueError:
        raise NotAPalette(f"{where}: {','.join(fields)!r} is not r,g,b") from None
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise NotAPalette(f"{where}: {','.join(fields)!r} is not r,g,b with each in 0..255")
    return colour_text(rgb)


def _lines(text: str) -> list[tuple[int, str]]:
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]


def parse_classes_txt(text: str) -> tuple[PaletteEntry, ...]:
    return tuple(PaletteEntry(line, None) for _, line in _lines(text))


def parse_labelmap_txt(text: str) -> tuple[PaletteEntry, ...]:
    entries = []
    for n, line in _lines(text):
        name, sep, rest = line.partition(":")
        if not sep or not name.strip():
            raise NotAPalette(f"line {n}: {line!r} is not name:r,g,b:parts:actions")
        entries.append(PaletteEntry(name.strip(), _rgb(rest.split(":")[0].split(","), f"line {n}")))
    return tuple(entries)


_HEADER = {"name": ("name", "class", "label", "class_name"), "r": ("r", "red"), "g": ("g", "green"),
           "b": ("b", "blue")}


def parse_csv(text: str) -> tuple[PaletteEntry, ...]:
    rows = [(n, [f.strip() for f in row]) for n, row in enumerate(csv.reader(io.StringIO(text)), 1)
            if any(f.strip() for f in row)]
    if not rows:
        raise NotAPalette("no rows")
    columns = {"name": 0, "r": 1, "g": 2, "b": 3}
    first = [f.lower() for f in rows[0][1]]
    if not all(f.isdigit() for f in rows[0][1][1:4]):  # a header row
        try:
            columns = {key: next(i for i, f in enumerate(first) if f in names) for key, names in _HEADER.items()}
        except StopIteration:
            raise NotAPalette(f"line 1: header {','.join(rows[0][1])!r} has no name,r,g,b columns") from None
        rows = rows[1:]
    entries = []
    for n, row in rows:
        if len(row) <= max(columns.values()):
            raise NotAPalette(f"line {n}: {','.join(row)!r} is not name,r,g,b")
        entries.append(PaletteEntry(row[columns["name"]],
                                    _rgb([row[columns[c]] for c in "rgb"], f"line {n}")))
    return tuple(entries)


@dataclass(frozen=True)
class PaletteFormat:
    describes: str
    matches: Callable[[Path], bool]
    parse: Callable[[str], tuple[PaletteEntry, ...]]
    # a file of this kind that does not parse is an error (True) or just another file (False):
    # a folder may hold CSVs that list images, not classes
    strict: bool


FORMATS: dict[str, PaletteFormat] = {
    "classes.txt": PaletteFormat("class names, one per line", lambda p: p.name.lower() == "classes.txt",
                                 parse_classes_txt, strict=True),
    "labelmap.txt": PaletteFormat("Pascal VOC / CVAT label map (name:r,g,b::)",
                                  lambda p: p.name.lower() == "labelmap.txt", parse_labelmap_txt, strict=True),
    "csv": PaletteFormat("CSV of name,r,g,b", lambda p: p.suffix.lower() == ".csv", parse_csv, strict=False),
}


def find_palette(root: Path) -> tuple[Palette | None, list[str]]:
    """The palette file at the top of ``root`` (None without one), and notes on files that looked
    like one but are not (a CSV that is not name,r,g,b). Raises DataError for a malformed
    classes.txt or labelmap.txt, an empty palette, names given twice, or two palette files."""
    found, notes, problems = [], [], []
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        key = next((k for k, f in FORMATS.items() if f.matches(path)), None)
        if key is None:
            continue
        try:
            entries = FORMATS[key].parse(path.read_text(encoding="utf-8-sig"))
        except (NotAPalette, UnicodeDecodeError) as exc:
            (problems if FORMATS[key].strict else notes).append(f"{path.name}: not a {FORMATS[key].describes} ({exc})")
            continue
        names = [e.name for e in entries]
        twice = sorted({n for n in names if names.count(n) > 1})
        if not entries:
            problems.append(f"{path.name}: names no class")
        elif twice:
            problems.append(f"{path.name}: names {', '.join(twice)} more than once")
        else:
            found.append(Palette(path, key, entries))
    if len(found) > 1:
        problems.append(f"{' and '.join(p.path.name for p in found)} both name the classes; keep one of them")
    if problems:
        lines = [f"dataset {root.name}/: palette file problem(s):", *(f"  {p}" for p in problems)]
        raise DataError(visible("\n".join(lines)))
    return (found[0] if found else None), notes
