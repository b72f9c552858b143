"""An exponential moving average of the weights over the end of a training run (timm's ModelEmaV3).

The average spans ``horizon`` of the run's optimizer steps: its decay is 1 − 1/(horizon · steps),
re-read at each step from the schedule's current span, so a retrain re-planned to its time keeps
averaging over the same share of it. timm's own warm-up (decay rising with the step count) is
tuned for runs of 10^4–10^6 steps; a retrain here has a few hundred to a few thousand, so the
span is set from the run's length instead. Parameters and buffers (BatchNorm statistics) are
both averaged, so the averaged model is a plain model of the same class: it exports, quantizes
and loads exactly like the trained one.
"""

from __future__ import annotations

from timm.utils.model_ema import ModelEmaV3
from torch import nn


class WeightAverage:
    """A ``fit`` step hook (:data:`automl.trial.engine.StepHook`): after each optimizer step."""

    def __init__(self, horizon: float = 0.1):
        self.horizon = horizon
        self.ema: ModelEmaV3 | None = None
        self.decay = 0.0

    def decay_for(self, total_steps: int) -> float:
        return 1.0 - 1.0 / max(1.0, self.horizon * total_steps)

    def __call__(self, model: nn.Module, step: int, total_steps: int) -> None:
        self.decay = self.decay_for(total_steps)
        if self.ema is None:
            self.ema = ModelEmaV3(model, decay=self.decay)
            return
        self.ema.decay = self.decay
        self.ema.update(model)

    @property
    def model(self) -> nn.Module:
        """The averaged model (eval mode); call after training."""
        if self.ema is None:
            raise RuntimeError("no step was taken: nothing was averaged")
        return self.ema.module.eval()

