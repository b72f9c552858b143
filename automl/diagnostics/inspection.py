"""The per-sample hunt for bad masks: score every image of a split alone, rank, write the report.

Output folder: ``ranking.csv`` (worst first), ``worst_NN_<stem>.png`` overlays for the worst K
images, ``legend.png`` and ``inspect.md`` (rule, flagged images, links to the overlays).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from automl.data.folder import Split
from automl.data.overlay import legend, overlay
from automl.diagnostics.per_sample import (
    DEFAULT_THRESHOLD,
    RULE,
    SampleScore,
    SampleScorer,
    rank,
    score_split,
    write_ranking,
)
from automl.trial.engine import Runtime
from automl.trial_config import TrialConfig

RANKING_FILE = "ranking.csv"
REPORT_FILE = "inspect.md"
LEGEND_FILE = "legend.png"


@dataclass
class Inspection:
    split: str
    ranked: list[SampleScore]
    threshold: float
    files: list[Path]

    @property
    def flagged(self) -> list[SampleScore]:
        return [s for s in self.ranked if s.flagged]


def overlay_file(rank: int, stem: str) -> str:
    return f"worst_{rank:02d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', stem)}.png"


def inspect_split(model: nn.Module, cfg: TrialConfig, split: Split, runtime: Runtime, out_dir: Path, *,
                  worst: int = 8, threshold: float = DEFAULT_THRESHOLD, source: str = "") -> Inspection:
    predictor = SampleScorer(model, cfg, runtime)
    ranked = rank(score_split(predictor, split), threshold)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [write_ranking(ranked, cfg.data.classes, out_dir / RANKING_FILE, split.name)]
    for s in ranked[:worst]:
        pred = predictor.predict(split.images[s.index])
        title = (f"#{s.rank} {split.name}/{s.stem}  mIoU {fmt_score(s.miou)}  loss {fmt_score(s.loss)}"
                 + ("  FLAGGED" if s.flagged else ""))
        path = out_dir / overlay_file(s.rank, s.stem)
        overlay(split.images[s.index], split.masks[s.index], pred, num_classes=cfg.data.num_classes,
                ignore_index=cfg.data.ignore_index, title=title).save(path)
        files.append(path)
    legend_path = out_dir / LEGEND_FILE
    legend(cfg.data.classes, cfg.data.ignore_index).save(legend_path)
    result = Inspection(split.name, ranked, threshold, files + [legend_path])
    report = out_dir / REPORT_FILE
    report.write_text(markdown(result, worst, source))
    result.files.insert(0, report)
    return result


def fmt_score(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def markdown(result: Inspection, worst: int, source: str) -> str:
    flagged = result.flagged
    lines = [f"# Per-image inspection: {source} on {result.split}", "",
             f"{len(result.ranked)} images evaluated one at a time (batch size 1). "
             f"{len(flagged)} flagged.", "",
             f"Rule: {RULE.format(t=result.threshold)}. "
             "An image with no labelled pixel is flagged and ranks first.", "",
             f"Full ranking: [{RANKING_FILE}]({RANKING_FILE}). Colours: [{LEGEND_FILE}]({LEGEND_FILE}).", "",
             "| rank | image | mIoU | loss | flagged because |", "| --- | --- | --- | --- | --- |"]
    for s in result.ranked[:max(worst, len(flagged))]:
        lines.append(f"| {s.rank} | {result.split}/{s.stem} | {fmt_score(s.miou)} | {fmt_score(s.loss)} | {s.reason} |")
    lines += ["", "## Worst images (image | ground truth | prediction | disagreement)", ""]
    lines += [f"![{s.stem}]({overlay_file(s.rank, s.stem)})" for s in result.ranked[:worst]]
    return "\n".join(lines) + "\n"
