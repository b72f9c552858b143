"""Raw mask values (or colours) → class indices, and back: ``data.label_map`` at decode time.

A single-channel mask (8- or 16-bit) is mapped through a lookup table over every raw value;
an RGB mask is packed to one integer per pixel (``r << 16 | g << 8 | b``) and its distinct
colours are mapped once each. Raw values and colours the map does not know are counted, not
guessed: the caller lists them (:mod:`automl.data.folder`). Without a map, a mask holds class
indices, and a value that is neither a class nor ``ignore_index`` is unknown.
"""

from __future__ import annotations

import numpy as np

from automl.config import RAW_VALUE_MAX, LabelMap, colour_text, parse_colour

# A lookup-table entry no class or void entry claims.
_UNKNOWN = -1


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.uint32, copy=False)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _packed_colour(text: str) -> int:
    r, g, b = parse_colour(text)
    return r << 16 | g << 8 | b


def _targets(label_map: LabelMap, ignore_index: int) -> dict:
    """Raw value or colour → what it decodes to (a class index, or ``ignore_index`` for void)."""
    return {**label_map.mapping, **{v: ignore_index for v in label_map.void}}


def decode_mask(raw: np.ndarray, label_map: LabelMap | None, n_classes: int,
                ignore_index: int) -> tuple[np.ndarray, dict[int | str, int]]:
    """``raw`` (H×W integers, or H×W×3 uint8 RGB for a colour map) → (H×W uint8 class indices,
    ``{raw value or "#rrggbb": pixel count}`` of what the map does not cover). Unknown pixels
    decode to ``ignore_index``; a caller that finds any refuses the mask."""
    if label_map is not None and label_map.kind == "colors":
        if raw.ndim != 3 or raw.shape[2] != 3:
            raise ValueError(f"data.label_map.colors needs H×W×3 RGB masks, got shape {raw.shape}")
        return _decode_colours(raw, label_map, ignore_index)
    if raw.ndim != 2:
        raise ValueError(f"an RGB mask needs data.label_map.colors, got shape {raw.shape}")
    if label_map is None:
        lut = np.full(RAW_VALUE_MAX + 1, _UNKNOWN, np.int16)
        lut[:n_classes] = np.arange(n_classes)
        lut[ignore_index] = ignore_index
    else:
        lut = np.full(RAW_VALUE_MAX + 1, _UNKNOWN, np.int16)
        for value, target in _targets(label_map, ignore_index).items():
            lut[value] = target
    values = raw
    if raw.dtype in (np.uint8, np.uint16):
        decoded = lut[raw]
    else:  # a 32-bit "I" mask may hold values no table covers
        values = raw.astype(np.int64, copy=False)
        outside = (values < 0) | (values > RAW_VALUE_MAX)
        decoded = lut[np.where(outside, 0, values)]
        decoded[outside] = _UNKNOWN
    unknown = decoded == _UNKNOWN
    counts: dict[int | str, int] = {}
    if unknown.any():
        found, n = np.unique(values[unknown], return_counts=True)
        counts = {int(v): int(c) for v, c in zip(found, n)}
        decoded[unknown] = ignore_index
    return decoded.astype(np.uint8), counts


def _decode_colours(rgb: np.ndarray, label_map: LabelMap, ignore_index: int) -> tuple[np.ndarray, dict]:
    colours, inverse = np.unique(_pack(rgb).ravel(), return_inverse=True)
    targets = {_packed_colour(c): t for c, t in _targets(label_map, ignore_index).items()}
    table = np.array([targets.get(int(c), _UNKNOWN) for c in colours], np.int16)
    per_colour = np.bincount(inverse, minlength=len(colours))
    counts = {colour_text(((int(c) >> 16) & 255, (int(c) >> 8) & 255, int(c) & 255)): int(per_colour[i])
              for i, c in enumerate(colours) if table[i] == _UNKNOWN}
    table[table == _UNKNOWN] = ignore_index
    return table[inverse].reshape(rgb.shape[:2]).astype(np.uint8), counts


def original_table(label_map: LabelMap) -> np.ndarray:
    """Class index → raw value (shape (256,)) or RGB colour (shape (256, 3)): each class gets the
    first raw value or colour the map lists for it; every other index (void among them) gets the
    first ``void`` entry, else 0 (black)."""
    void = label_map.void[0] if label_map.void else (0 if label_map.kind == "values" else "#000000")
    first: dict[int, int | str] = {}
    for key, index in label_map.mapping.items():
        first.setdefault(index, key)
    if label_map.kind == "values":
        table = np.full(256, void, np.int64)
        for index, value in first.items():
            table[index] = value
        return table.astype(np.uint8 if table.max() <= 255 else np.uint16)
    table = np.tile(np.array(parse_colour(void), np.uint8), (256, 1))
    for index, colour in first.items():
        table[index] = parse_colour(colour)
    return table


def to_original(indices: np.ndarray, label_map: LabelMap | None) -> np.ndarray:
    """H×W class indices (a prediction, or a decoded mask) → the masks' own encoding: raw values
    (uint8, or uint16 when a value needs it), or H×W×3 uint8 RGB colours. Without a map the masks
    held class indices, and the indices come back unchanged."""
    indices = np.asarray(indices)
    if indices.dtype.kind not in "ui" or indices.size and (indices.min() < 0 or indices.max() > 255):
        raise ValueError(f"to_original expects uint8 class indices, got dtype {indices.dtype}")
    if label_map is None:
        return indices.astype(np.uint8)
    return original_table(label_map)[indices]


def describe(label_map: LabelMap | None) -> str:
    """One line for logs: 'values 0→0, 255→1; void 128'."""
    if label_map is None:
        return "none (masks hold class indices)"
    pairs = list(label_map.mapping.items())
    shown = ", ".join(f"{k}→{v}" for k, v in pairs[:12]) + (f", … ({len(pairs)} in all)" if len(pairs) > 12 else "")
    void = f"; void {', '.join(map(str, label_map.void))}" if label_map.void else ""
    return f"{label_map.kind} {shown}{void}"
