"""Every class must have pixels in the train split, or the search trains a model that cannot
learn it. Checked when a search starts (``automl search``, ``automl run``, a worker), after the
masks are mapped and the selection split is carved; ``automl audit`` still loads such data and
reports on it."""

from __future__ import annotations

import numpy as np

from automl.config import DataSection
from automl.data.folder import Dataset
from automl.errors import DataError


def class_pixels(masks: list[np.ndarray], n_classes: int, ignore_index: int) -> np.ndarray:
    """Pixels per class index (0..n_classes-1), over ``masks``; the last entry: void pixels."""
    counts = np.zeros(256, np.int64)
    for m in masks:
        counts += np.bincount(m.ravel(), minlength=256)
    return np.append(counts[:n_classes], counts[ignore_index])


def require_every_class(ds: Dataset, data: DataSection) -> None:
    """A DataError naming every class without a pixel in ``ds.train``, and the fix."""
    n = len(data.classes)
    counts = class_pixels(ds.train.masks, n, data.ignore_index)
    absent = [i for i in range(n) if counts[i] == 0]
    if not absent:
        return
    after = [*(["data.label_map"] if data.label_map is not None else []),
             *(["the data.val_fraction carve"] if data.val_fraction is not None else [])]
    where = f"the {len(ds.train)} train images" + (f" after {' and '.join(after)}" if after else "")
    plain = "" if data.label_map is not None else " (no data.label_map: mask values are read as class indices)"
    lines = [f"class {data.classes[i]!r} ({i}) has no pixels in {where}{plain}" for i in absent]
    if data.label_map is None and n == 2 and counts[1] == 0 and counts[-1] > 0:
        lines.append(f"every train pixel is background (0) or void ({data.ignore_index}): if {data.ignore_index} marks the "
                     f"foreground, not void, set data.label_map.values: {{0: 0, {data.ignore_index}: 1}}")
    raise DataError("the search cannot learn a class it never sees:\n" + "\n".join(f"  {x}" for x in lines)
                    + "\nCheck data.label_map and data.classes (a 0/255 mask with ignore_index 255 reads every "
                      "foreground pixel as void), or add train images that contain the class")
