"""What the raw mask values mean: the classes, the void values, and ``data.label_map``.

One table of rules (:data:`RULES`), tried in order; the first that applies reads the values, and
its reason is printed and written into the study file. ``--void`` comes first: the values or
colours it names are void whatever the rule. Every guess is stated; an unknown colour, a palette
that names fewer colours than the masks hold, or a void value no mask holds is an error that
lists each offender with its pixel count and first files.

The masks need no ``label_map`` when they are already plain class indices: 8-bit values
0..k-1, plus at most one void value, which becomes ``data.ignore_index``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from automl.config import RAW_VALUE_MAX, colour_text, parse_colour
from automl.data.fingerprint import FIRST_FILES, Fingerprint, RawValue
from automl.data.palette import Palette, PaletteEntry, is_void_name
from automl.errors import ConfigError, DataError
from automl.terminal import visible

Key = int | str  # a raw value, or "#rrggbb"
MAX_CLASSES = 255  # data.ignore_index is at most 255 and must not be a class index
DEFAULT_IGNORE = 255
# Pascal VOC's void colour (its palette entry 255)
VOC_VOID = "#e0e0c0"


@dataclass(frozen=True)
class Found:
    """The fingerprint's raw values as the rules read them."""

    kind: Literal["values", "colours"]
    bits: int  # 8 or 16 for values; 8 for colours
    values: tuple[RawValue, ...]  # without the void ones
    void: tuple[Key, ...]  # named by --void
    palette: Palette | None
    # RGB masks whose pixels are all grey: read as values, written back as colours (the files
    # are RGB, and a search decodes them as colours)
    as_colours: bool = False
    notes: tuple[str, ...] = ()

    @property
    def keys(self) -> list[Key]:
        return [v.key for v in self.values]

    def stat(self, key: Key) -> RawValue:
        return next(v for v in self.values if v.key == key)


@dataclass
class Assignment:
    """What a rule decided: each class's name and raw keys (class index = position), void keys."""

    classes: list[tuple[str, list[Key]]]
    void: list[Key] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Rule:
    name: str
    reason: str  # the convention the rule follows, in words (may name {palette})
    applies: Callable[[Found], bool]
    assign: Callable[[Found], Assignment]


@dataclass(frozen=True)
class Encoding:
    rule: str
    classes: tuple[str, ...]
    class_keys: tuple[tuple[Key, ...], ...]  # the raw values or colours of each class
    void: tuple[Key, ...]
    ignore_index: int
    label_map: dict | None  # data.label_map as the study file writes it; None: plain class indices
    reasons: tuple[str, ...]


# --- helpers the rules share ----------------------------------------------------------------

def _unknown_error(what: str, unknown: list[RawValue], hint: str) -> DataError:
    lines = [f"  {str(v.key)}: {v.pixels:,} pixels in {v.files} file(s) ({', '.join(v.first)}"
             f"{', ...' if v.files > FIRST_FILES else ''})" for v in unknown]
    return DataError(visible(f"{what}; the masks hold {len(unknown)} it does not name:\n" + "\n".join(lines)
                             + f"\n{hint}"))


def _named_by_value(found: Found) -> str:
    return "value" if found.kind == "values" else "colour"


def _default_name(key: Key, i: int, found: Found) -> str:
    return f"class_{key}" if found.kind == "values" else f"class_{i}"


def _names(found: Found, keys: list[Key], default: list[str], *, by_index: bool) -> Assignment:
    """Classes for ``keys`` (one each, in order), named by classes.txt when there is one: line v
    names value v when the values are class indices (``by_index``), else line i names the i-th
    class. A line named void/unlabelled/ignore makes its value void."""
    pal = found.palette
    if pal is None or pal.format != "classes.txt":
        return Assignment([(name, [k]) for name, k in zip(default, keys)])
    names = [e.name for e in pal.entries]
    if by_index and len(names) > max(keys):
        chosen = [(names[k], k) for k in keys]
        unused = [f"{n} ({i})" for i, n in enumerate(names) if i not in keys and not is_void_name(n)]
        notes = [f"{pal.path.name} names {len(unused)} class(es) with no pixels in any mask, left out: "
                 f"{', '.join(unused[:12])}{' ...' if len(unused) > 12 else ''}"] if unused else []
    elif len(names) == len(keys):
        chosen, notes = list(zip(names, keys)), []
    else:
        raise DataError(visible(f"{pal.path.name} names {len(names)} classes ({', '.join(names[:12])}); the masks "
                                f"hold {len(keys)} class values ({', '.join(map(str, keys[:24]))}). Give one name "
                                "per value, in value order"))
    void = [k for n, k in chosen if is_void_name(n)]
    if void:
        notes.append(f"{pal.path.name} names {', '.join(map(str, void))} void: read as void")
    return Assignment([(n, [k]) for n, k in chosen if k not in void], void, notes)


def _consecutive(found: Found, *, by_index: bool = False) -> Assignment:
    keys = found.keys
    return _names(found, keys, [_default_name(k, i, found) for i, k in enumerate(keys)], by_index=by_index)


def _palette_key(entry: PaletteEntry, found: Found) -> Key | None:
    """The raw key a colour palette entry names: its colour, or for single-channel masks its grey
    level (None for a non-grey colour, which no single-channel mask holds)."""
    c = entry.colour
    if found.kind == "colours":
        return c
    return int(c[1:3], 16) if c[1:3] == c[3:5] == c[5:7] else None


def _by_palette(found: Found, named: dict[Key, str], source: str, hint: str) -> Assignment:
    """Classes in ``named``'s order (key → name), those with pixels; void names go to void."""
    unknown = [v for v in found.values if v.key not in named]
    if unknown:
        raise _unknown_error(f"{source} names {len(named)} {_named_by_value(found)}s", unknown, hint)
    present = set(found.keys)
    classes = [(name, [k]) for k, name in named.items() if k in present and not is_void_name(name)]
    void = [k for k, name in named.items() if k in present and is_void_name(name)]
    absent = [f"{name} ({str(k)})" for k, name in named.items()
              if k not in present and not is_void_name(name)]
    notes = [f"{source}: {len(absent)} class(es) with no pixels in any mask left out (a search refuses a class it "
             f"cannot learn): {', '.join(absent[:12])}{' ...' if len(absent) > 12 else ''}"] if absent else []
    if void:
        notes.append(f"{source} names {', '.join(map(str, void))} void: read as void")
    return Assignment(classes, void, notes)


def _palette_colours(found: Found) -> Assignment:
    pal = found.palette
    named: dict[Key, str] = {}
    coloured = []  # entries no single-channel mask can hold
    for entry in pal.entries:
        key = _palette_key(entry, found)
        if key is None:
            coloured.append(entry)
        else:
            named.setdefault(key, entry.name)
    if coloured and not named:
        raise DataError(visible(f"{pal.path.name} gives colours ({', '.join(e.colour for e in coloured[:6])}), but "
                                "the masks are single-channel values, not RGB; remove the palette file to have the "
                                "values numbered, or give classes.txt (one name per value)"))
    hint = f"Add them to {pal.path.name}, or pass --void for a {_named_by_value(found)} to ignore"
    a = _by_palette(found, named, pal.path.name, hint)
    if coloured:
        a.notes.append(f"{pal.path.name}: the masks are single-channel, so only its grey entries (r = g = b) name "
                       f"values; left out: {', '.join(f'{e.name} ({e.colour})' for e in coloured[:8])}")
    return a


def voc_colour(index: int) -> str:
    """Pascal VOC's colour for class ``index`` (its palette: bits of the index spread over r, g, b)."""
    r = g = b = 0
    c = index
    for j in range(8):
        r |= (c & 1) << (7 - j)
        g |= ((c >> 1) & 1) << (7 - j)
        b |= ((c >> 2) & 1) << (7 - j)
        c >>= 3
    return colour_text((r, g, b))


def _voc_colours(found: Found) -> Assignment:
    pal = found.palette
    named = {voc_colour(i): e.name for i, e in enumerate(pal.entries)}
    named.setdefault(VOC_VOID, "void")
    hint = (f"{pal.path.name} gives names, not colours: name each colour with labelmap.txt (name:r,g,b::) or a CSV "
            f"of name,r,g,b instead, or remove {pal.path.name} to have the colours numbered")
    return _by_palette(found, named, f"{pal.path.name} (read with the Pascal VOC colour map)", hint)


def _binary(found: Found) -> Assignment:
    return _names(found, [0, 255], ["background", "foreground"], by_index=False)


def _dense(keys: list[Key]) -> bool:
    """Small class indices: at least half of 0..max in use (grey levels spread over 0..255 are not)."""
    return bool(keys) and max(keys) < 255 and max(keys) + 1 <= 2 * len(keys)


def _indices(found: Found) -> Assignment:
    keys = [k for k in found.keys if k != 255]
    void = [255] if 255 in found.keys and not found.void else []
    picked = Found(found.kind, found.bits, tuple(v for v in found.values if v.key in keys), found.void,
                   found.palette, found.as_colours)
    a = _consecutive(picked, by_index=True)
    a.void += void
    if void:
        a.notes.append("255 is read as void: it is the usual void label (Pascal VOC, Cityscapes) next to small class "
                       "indices; if it is a class, pass --void with the real void value (or edit the study file)")
    gaps = sorted(set(range(max(keys) + 1)) - set(keys))
    if gaps:
        a.notes.append(f"values {', '.join(map(str, gaps[:12]))} have no pixels: the classes are renumbered "
                       "0..k-1 in value order (data.label_map)")
    return a


RULES: tuple[Rule, ...] = (
    Rule("palette colours", "{palette} names each colour: the classes follow its order; entries named "
         "void/unlabelled/ignore are void",
         lambda f: f.palette is not None and f.palette.has_colours, _palette_colours),
    Rule("VOC colours named by classes.txt", "RGB masks and a classes.txt without colours: the colours are read as "
         "the Pascal VOC colour map (class i has VOC colour i), named by {palette}'s lines",
         lambda f: f.kind == "colours" and f.palette is not None and f.palette.format == "classes.txt", _voc_colours),
    Rule("numbered colours", "RGB colour masks without a palette file: each distinct colour is a class, numbered in "
         "colour order (#rrggbb sorted); the study file lists each class's colour",
         lambda f: f.kind == "colours", lambda f: _consecutive(f)),
    Rule("16-bit values", "16-bit masks: each distinct value is a class, mapped to consecutive class indices in "
         "sorted order",
         lambda f: f.bits == 16, lambda f: _consecutive(f)),
    Rule("binary 0/255", "masks hold only 0 and 255, the usual binary export: 0 is the background and 255 the "
         "foreground (not void)",
         lambda f: f.keys == [0, 255], _binary),
    Rule("class indices", "8-bit values 0..k-1 are class indices",
         lambda f: _dense([k for k in f.keys if k != 255 or f.void]), _indices),
    Rule("grey levels", "8-bit values spread over 0..255 (grey levels, not small class indices): each value is a "
         "class, in value order; 255 is a class here, not void",
         lambda f: True, lambda f: _consecutive(f)),
)


# --- --void and the entry point -------------------------------------------------------------

def parse_void(text: str) -> Key:
    """``--void``: an integer raw value or a "#rrggbb" colour."""
    t = text.strip()
    if t.isdigit() and int(t) <= RAW_VALUE_MAX:
        return int(t)
    try:
        return colour_text(parse_colour(t))
    except ValueError:
        pass
    raise ConfigError(visible(f"--void {text!r}: give a raw mask value (an integer 0..65535) or a colour #rrggbb"))


def _found(fp: Fingerprint, void: list[Key]) -> Found:
    as_colours = fp.grey_colours
    kind = "colours" if fp.mask_kind == "RGB" and not as_colours else "values"
    values = fp.values
    notes = []
    if as_colours:
        values = tuple(RawValue(int(v.key[1:3], 16), v.pixels, v.files, v.first) for v in values)
        notes.append("the RGB masks have r = g = b in every pixel: single-channel values in disguise, read as values "
                     "(grey levels) and written as colours in data.label_map, since the files are RGB")
    keys, problems = [], []
    for v in void:
        if kind == "values" and isinstance(v, str):
            if not v[1:3] == v[3:5] == v[5:7]:
                problems.append(f"--void {v}: the masks are single-channel values; give a value (e.g. --void 255)")
                continue
            v = int(v[1:3], 16)
        elif kind == "colours" and isinstance(v, int):
            problems.append(f"--void {v}: the masks are RGB colours; give a colour (e.g. --void #ffffff)")
            continue
        if v not in {x.key for x in values}:
            problems.append(f"--void {v}: no mask holds it (found: {', '.join(str(x.key) for x in values[:16])}"
                            f"{', ...' if len(values) > 16 else ''})")
        keys.append(v)
    if problems:
        raise ConfigError(visible("\n".join(problems)))
    return Found(kind, 16 if fp.mask_kind == "16-bit" else 8, tuple(x for x in values if x.key not in keys),
                 tuple(keys), fp.palette, as_colours, tuple(notes))


def read_encoding(fp: Fingerprint, void: list[Key] | None = None) -> Encoding:
    """The classes and ``data.label_map`` for ``fp``'s masks, by the first rule of :data:`RULES`
    that applies; ``void``: raw values or colours given with ``--void``."""
    found = _found(fp, list(void or []))
    rule = next(r for r in RULES if r.applies(found))
    a = rule.assign(found)
    a.void = list(dict.fromkeys([*found.void, *a.void]))
    reasons = [rule.reason.format(palette=found.palette.path.name if found.palette else ""), *found.notes, *a.notes]
    if found.void:
        reasons.append(f"--void: {', '.join(map(str, found.void))} read as void")
    elif not a.void:
        example = "#rrggbb" if found.kind == "colours" else "VALUE"
        reasons.append(f"no {_named_by_value(found)} is read as void: if one marks unlabelled pixels, pass --void "
                       f"{example} (it is then ignored, not learnt)")
    if len(a.classes) < 2:
        raise DataError(visible(f"the masks hold {len(a.classes)} class ({', '.join(n for n, _ in a.classes)}) after "
                                f"void ({', '.join(map(str, a.void)) or 'none'}): nothing to tell apart"))
    if len(a.classes) > MAX_CLASSES:
        blended = (" (colour masks saved with smoothing, resizing or as JPEG hold blended colours: save them without)"
                   if found.kind == "colours" else "")
        raise DataError(f"the masks hold {len(a.classes)} distinct class {_named_by_value(found)}s; a study takes at "
                        f"most {MAX_CLASSES}{blended}")
    names = [n for n, _ in a.classes]
    if len(set(names)) != len(names):
        raise DataError(visible(f"class names given twice: {sorted({n for n in names if names.count(n) > 1})}"))
    ignore, label_map = _label_map(found, a)
    if label_map is None:
        reasons.append("the masks already hold plain class indices: no data.label_map"
                       + (f"; the void value {ignore} is data.ignore_index" if a.void else ""))
    return Encoding(rule.name, tuple(names), tuple(tuple(k) for _, k in a.classes), tuple(a.void), ignore,
                    label_map, tuple(reasons))


def _label_map(found: Found, a: Assignment) -> tuple[int, dict | None]:
    plain = (found.kind == "values" and not found.as_colours and found.bits == 8
             and all(keys == [i] for i, (_, keys) in enumerate(a.classes))
             and len(a.void) <= 1 and all(len(a.classes) <= v <= 255 for v in a.void))
    if plain:
        return (a.void[0] if a.void else DEFAULT_IGNORE), None
    as_key = (lambda k: colour_text((k, k, k))) if found.as_colours else (lambda k: k)
    field_name = "colors" if found.kind == "colours" or found.as_colours else "values"
    doc: dict = {field_name: {as_key(k): i for i, (_, keys) in enumerate(a.classes) for k in keys}}
    if a.void:
        doc["void"] = [as_key(k) for k in a.void]
    return DEFAULT_IGNORE, doc
