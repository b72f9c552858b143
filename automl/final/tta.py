"""Decide on test-time augmentation: keep it only if val mIoU gains at least ``min_gain``."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from automl.bundle.predictor import Predictor
from automl.bundle.tta import TTASpec
from automl.data.folder import Split
from automl.final.evaluate import Scores, evaluate

log = logging.getLogger(__name__)


@dataclass
class TTADecision:
    spec: TTASpec
    kept: bool
    min_gain: float
    gain: float | None = None        # TTA mIoU - plain mIoU on val; None when not evaluated
    scores: Scores | None = None     # TTA scores on val

    @property
    def evaluated(self) -> bool:
        return self.scores is not None

    def as_dict(self) -> dict:
        return {"views": self.spec.describe(), "hflip": self.spec.hflip, "vflip": self.spec.vflip,
                "scales": list(self.spec.scales), "evaluated": self.evaluated, "kept": self.kept,
                "gain": None if self.gain is None else round(self.gain, 6), "min_gain": self.min_gain}


def decide_tta(predictor: Predictor, split: Split, plain: Scores, spec: TTASpec, min_gain: float,
               num_classes: int, ignore_index: int) -> TTADecision:
    """``plain``: the same predictor's scores without TTA on ``split``."""
    if not spec.enabled:
        log.info("TTA: no views configured (final.tta), skipped")
        return TTADecision(spec, False, min_gain)
    scores = evaluate(predictor.with_tta(spec), split, num_classes, ignore_index)
    gain = scores.miou - plain.miou
    kept = gain >= min_gain
    log.info("TTA %s: val mIoU %.4f vs %.4f (gain %+.4f, needed %.4f): %s", spec.describe(), scores.miou,
             plain.miou, gain, min_gain, "kept" if kept else "dropped")
    return TTADecision(spec, kept, min_gain, gain, scores)
