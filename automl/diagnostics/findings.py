"""Plain-language findings from an ``Audit``, each with the remedy this product offers.

Rules, all on the train split unless stated (thresholds are module constants):
- a class in no train image;
- rare classes: under ``RARE_PIXEL_FACTOR`` of an even pixel share (1/K), or in under
  ``RARE_IMAGE_SHARE`` of the images;
- a dominant class: at least ``DOMINANT_FACTOR`` x an even share and ``DOMINANT_MIN`` of the pixels;
- layout: in at least ``POSITION_SHARE`` of the images containing a class (and at least
  ``POSITION_MIN_IMAGES`` of them) at least ``automl.diagnostics.audit.HALF_SHARE`` of its
  pixels sit in one half of the frame (one finding per half, naming each such class); or at
  least ``CENTRE_SHARE`` of its pixels lie in the central quarter (0.25 if spread evenly);
- label sanity: masks with no labelled pixel, masks holding a single class, a void share of at
  least ``VOID_SHARE``, and masks that hold one class and void only (the 0/255 trap: binary
  masks whose foreground value is the ignore index);
- train/val shift: a class whose val pixel share differs from train by ``SHIFT_FACTOR`` or more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from automl.diagnostics.audit import HALF_SHARE, Audit, SplitStats

RARE_PIXEL_FACTOR = 0.25
RARE_IMAGE_SHARE = 0.2
DOMINANT_FACTOR = 3.0
DOMINANT_MIN = 0.25
POSITION_SHARE = 0.8
POSITION_MIN_IMAGES = 5
CENTRE_SHARE = 0.5
VOID_SHARE = 0.05
SHIFT_FACTOR = 2.0
SHIFT_MIN_SHARE = 0.005
LIST_MAX = 5


@dataclass(frozen=True)
class Finding:
    kind: str      # frequency | layout | labels | shift
    text: str
    remedy: str

    def __str__(self) -> str:
        return f"{self.text}. Remedy: {self.remedy}."


def pct(x: float) -> str:
    """A share as a readable percentage: 0.3 %, 12 %, 97 %, 99.7 % (never rounded up to 100 %)."""
    v = 100 * x
    if v in (0, 100) or 9.95 <= v < 99.5:
        return f"{v:.0f} %"
    if v >= 99.5:
        return f"{np.floor(v * 10) / 10:.1f} %"
    return f"{v:.1f} %" if v >= 0.095 else f"{v:.2f} %"


def _listing(stems: list[str], split: str) -> str:
    shown = ", ".join(f"{split}/{s}" for s in stems[:LIST_MAX])
    return shown + (f" and {len(stems) - LIST_MAX} more" if len(stems) > LIST_MAX else "")


def frequency_findings(audit: Audit) -> list[Finding]:
    s, names, k = audit.train, audit.classes, len(audit.classes)
    even = 1.0 / k
    weights = audit.class_weights()
    out: list[Finding] = []
    for c, name in enumerate(names):
        px, im = s.pixel_share[c], s.image_share[c]
        if s.image_counts[c] == 0:
            out.append(Finding("frequency", f"{name} appears in none of the {s.n_images} train images",
                               "label examples of it, or drop it from data.classes; the model cannot learn it"))
            continue
        rare_px, rare_im = px < RARE_PIXEL_FACTOR * even, im < RARE_IMAGE_SHARE
        if not (rare_px or rare_im):
            continue
        remedies = []
        if rare_px:
            remedies.append("the target-centred crop (augment.target_crop > 0), which centres crops on the "
                            "rarer classes of each image")
            remedies.append(f"Dice or Focal loss terms (loss.dice, loss.focal in the search space); in your own "
                            f"training code, a median-frequency CE class weight of {weights[c]:.1f}")
        if rare_im:
            remedies.append(f"oversample the {s.image_counts[c]} images that contain it (repeat them in train/)")
        out.append(Finding("frequency", f"{name} is {pct(px)} of pixels and appears in {pct(im)} of images "
                                        f"({s.image_counts[c]} of {s.n_images})", "; ".join(remedies)))
    for c, name in enumerate(names):
        px = s.pixel_share[c]
        if px >= DOMINANT_FACTOR * even and px >= DOMINANT_MIN:
            out.append(Finding("frequency", f"{name} dominates with {pct(px)} of pixels (an even split "
                                            f"gives {pct(even)})",
                               f"mIoU weighs every class equally: Dice/Focal loss terms (loss.dice, loss.focal) "
                               f"keep it from drowning the loss (median-frequency CE class weight: "
                               f"{weights[c]:.2f})"))
    return out


_HALF_REMEDY = {
    "top": "the target-centred crop (augment.target_crop) shows these classes at other heights, so the model "
           "learns their look rather than their place; keep the cue if test images share this layout",
    "left": "horizontal flips (augment.hflip) and the target-centred crop (augment.target_crop)",
}
_HALF_REMEDY["bottom"] = _HALF_REMEDY["top"]
_HALF_REMEDY["right"] = _HALF_REMEDY["left"]


def layout_findings(audit: Audit) -> list[Finding]:
    """One finding per half of the frame, naming every class that mostly sits there."""
    s = audit.train
    out: list[Finding] = []
    counted = s.image_counts >= POSITION_MIN_IMAGES
    for side in ("bottom", "top", "left", "right"):
        share = s.mostly_share(side)
        hits = sorted((c for c in range(len(audit.classes)) if counted[c] and share[c] >= POSITION_SHARE),
                      key=lambda c: -share[c])
        if not hits:
            continue
        first, *rest = hits
        text = (f"{audit.classes[first]}: at least {HALF_SHARE:.0%} of its pixels sit in the {side} half in "
                f"{pct(share[first])} of the {s.image_counts[first]} images that contain it")
        if rest:
            text += "; likewise " + ", ".join(f"{audit.classes[c]} ({pct(share[c])})" for c in rest)
        out.append(Finding("layout", text, _HALF_REMEDY[side]))
    central = [c for c in range(len(audit.classes)) if counted[c] and s.central_share[c] >= CENTRE_SHARE]
    if central:
        listed = ", ".join(f"{audit.classes[c]} ({pct(s.central_share[c])})" for c in central)
        out.append(Finding("layout", f"objects concentrate in the centre of the frame: share of pixels in the "
                                     f"central quarter (25 % if spread evenly): {listed}",
                           "the target-centred crop (augment.target_crop) with scale augmentation "
                           "(augment.scale_min/scale_max) moves them around the frame"))
    return out


def _binary_void_trap(audit: Audit) -> Finding | None:
    """Every train mask holds one class and void, nothing else: binary masks (0 and 255, say)
    read with the foreground value as the ignore index, so the model can only learn background."""
    s = audit.train
    present = np.flatnonzero(s.pixel_counts)
    if len(present) != 1 or s.void_pixels == 0:
        return None
    only = audit.classes[present[0]]
    return Finding("labels", f"train masks hold only two values, {only} ({present[0]}) and the ignore index "
                             f"{audit.ignore_index}, which covers {pct(s.void_share)} of pixels: if "
                             f"{audit.ignore_index} marks a class (binary masks of 0 and {audit.ignore_index}), "
                             "every pixel of it is read as void and never learnt",
                   f"map the values in the study file, e.g. data.label_map: {{values: {{{present[0]}: 0, "
                   f"{audit.ignore_index}: 1}}}} with two data.classes, or run `automl init` on the folder, "
                   "which writes it")


def label_findings(audit: Audit) -> list[Finding]:
    out: list[Finding] = [f for f in (_binary_void_trap(audit),) if f is not None]
    for name, s in audit.splits.items():
        if s.all_void:
            out.append(Finding("labels", f"{len(s.all_void)} {name} mask(s) hold no labelled pixel (all "
                                         f"{audit.ignore_index}): {_listing(s.all_void, name)}",
                               "label them or remove them; they add nothing to training or scoring"))
        if s.single_class:
            by_class: dict[int, list[str]] = {}
            for stem, c in s.single_class:
                by_class.setdefault(c, []).append(stem)
            parts = "; ".join(f"{audit.classes[c]}: {_listing(stems, name)}" for c, stems in by_class.items())
            out.append(Finding("labels", f"{len(s.single_class)} {name} mask(s) hold a single class ({parts})",
                               "fine for images showing only that class; otherwise objects were left "
                               "unlabelled: check them, or run `automl inspect` after a search"))
        if s.void_share >= VOID_SHARE:
            out.append(Finding("labels", f"void (label {audit.ignore_index}) covers {pct(s.void_share)} of "
                                         f"{name} pixels; it is ignored in loss and metrics",
                               "make sure void marks only what cannot be labelled, not skipped objects"))
    return out


def shift_findings(audit: Audit) -> list[Finding]:
    if "val" not in audit.splits:
        return []
    tr, va = audit.train, audit.splits["val"]
    out: list[Finding] = []
    for c, name in enumerate(audit.classes):
        a, b = float(tr.pixel_share[c]), float(va.pixel_share[c])
        if va.image_counts[c] == 0:
            if tr.image_counts[c] > 0:
                out.append(Finding("shift", f"{name} appears in train but in none of the {va.n_images} val "
                                            "images", "its IoU is never measured; move some of its images to val"))
            continue
        if a == 0 or max(a, b) < SHIFT_MIN_SHARE:
            continue  # absent from train: a frequency finding already
        if max(a, b) / min(a, b) >= SHIFT_FACTOR:
            out.append(Finding("shift", f"{name} is {pct(a)} of train pixels but {pct(b)} of val pixels",
                               "val scores a different mix than train teaches; check the split is random, "
                               "or accept the difference knowingly"))
    return out


def findings(audit: Audit) -> list[Finding]:
    return [*frequency_findings(audit), *layout_findings(audit), *label_findings(audit), *shift_findings(audit)]


def sizes_summary(s: SplitStats) -> str:
    hs = np.array([h for (h, _), n in s.sizes.items() for _ in range(n)])
    ws = np.array([w for (_, w), n in s.sizes.items() for _ in range(n)])
    if len(s.sizes) == 1:
        (h, w), = s.sizes
        return f"all {s.n_images} images are {w}x{h}"
    return (f"{len(s.sizes)} sizes; width {ws.min()}–{ws.max()} (median {np.median(ws):.0f}), "
            f"height {hs.min()}–{hs.max()} (median {np.median(hs):.0f})")
