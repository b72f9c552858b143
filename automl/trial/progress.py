"""What a trial tells whoever watches it. The study's live view implements this."""

from __future__ import annotations

from automl.trial.engine import EpochResult
from automl.trial_config import TrialConfig


class TrialEvents:
    """No-op base: override what you display."""

    def trial_started(self, number: int, cfg: TrialConfig) -> None:
        pass

    def epoch_done(self, number: int, res: EpochResult, epochs: int) -> None:
        pass
