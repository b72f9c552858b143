"""Write an audit as ``audit.md`` plus position heatmap PNGs into one folder."""

from __future__ import annotations

import re
from pathlib import Path

from automl.data.folder import padded_size
from automl.diagnostics.audit import Audit
from automl.diagnostics.findings import Finding, pct, sizes_summary
from automl.diagnostics.heatmap import render, render_sheet

REPORT_FILE = "audit.md"
SHEET_FILE = "heatmaps.png"


def heatmap_file(name: str) -> str:
    return f"heatmap_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"


def write_heatmaps(audit: Audit, out_dir: Path, split: str = "train") -> list[Path]:
    s = audit.splits[split]
    paths = [out_dir / SHEET_FILE]
    render_sheet(s.density, audit.classes,
                 heading=f"{split}: class-pixel density over normalised image coordinates "
                         f"({audit.grid}x{audit.grid}; each map scaled to its own max)").save(paths[0])
    for c, name in enumerate(audit.classes):
        path = out_dir / heatmap_file(name)
        render(s.density[c], name, size=256).save(path)
        paths.append(path)
    return paths


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(audit: Audit, found: list[Finding], source: str, pad_divisor: int = 32) -> str:
    names, splits = audit.classes, audit.splits
    weights = audit.class_weights()
    lines = [f"# Dataset audit: {source}", "",
             f"{len(names)} classes, void = {audit.ignore_index}. "
             + ", ".join(f"{n}: {s.n_images} images" for n, s in splits.items()) + ".", "",
             "## Findings", ""]
    lines += [f"- {f.text}.  \n  *Remedy:* {f.remedy}." for f in found] or ["- nothing stands out."]
    lines += ["", "## Class frequencies", "",
              "Pixel share = share of labelled (non-void) pixels; image share = share of images containing "
              "the class; weight = median-frequency balancing weight on train.", ""]
    head = ["class"] + [f"{n} {what}" for n in splits for what in ("pixels", "images")] + ["weight"]
    lines += [_row(head), _row(["---"] * len(head))]
    for c, name in enumerate(names):
        cells = [name] + [v for s in splits.values() for v in (pct(s.pixel_share[c]), pct(s.image_share[c]))]
        lines.append(_row(cells + [f"{weights[c]:.2f}"]))
    lines += ["", "## Sizes and label sanity", ""]
    for n, s in splits.items():
        lines.append(f"- **{n}**: {sizes_summary(s)}; void {pct(s.void_share)} of pixels; "
                     f"{len(s.all_void)} all-void mask(s); {len(s.single_class)} single-class mask(s).")
    h, w = (max(dim) for dim in zip(*(size for s in splits.values() for size in s.sizes)))
    ph, pw = padded_size((h, w), pad_divisor)
    if (ph, pw) != (h, w):
        lines.append(f"- The largest size, {w}x{h}, is not a multiple of {pad_divisor}: the model sees it padded "
                     f"to {pw}x{ph} (padding is void, so it costs compute, not accuracy).")
    tr = audit.train
    lines += ["", "## Where classes sit (train)", "",
              "Share of the images containing the class in which most of its pixels lie in each half; "
              "centre = share of its pixels in the central quarter of the frame (25 % if spread evenly).", "",
              _row(["class", "top", "bottom", "left", "right", "centre"]), _row(["---"] * 6)]
    for c, name in enumerate(names):
        lines.append(_row([name, *(pct(tr.mostly_share(side)[c]) for side in ("top", "bottom", "left", "right")),
                           pct(tr.central_share[c])]))
    lines += ["", f"![class positions]({SHEET_FILE})", ""]
    lines += [f"- [{name}]({heatmap_file(name)})" for name in names]
    return "\n".join(lines) + "\n"


def write_report(audit: Audit, found: list[Finding], out_dir: Path, source: str,
                 pad_divisor: int = 32) -> list[Path]:
    """Write ``audit.md`` and the heatmaps into ``out_dir``; return every file written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = write_heatmaps(audit, out_dir)
    md = out_dir / REPORT_FILE
    md.write_text(markdown(audit, found, source, pad_divisor))
    return [md, *pngs]
