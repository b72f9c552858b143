"""Keep the weights of the best completed trial so far under ``runs/<study>/best_trial/``.

``automl inspect`` and the dashboard use them; the final stage retrains from the config anyway.
Several workers may finish trials at once: under a file lock, the folder is replaced (atomically)
only when the new value beats the one recorded inside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from filelock import FileLock

from automl.trial.checkpoint import TRIAL_CONFIG_FILE, save_model
from automl.trial.engine import FitResult
from automl.trial_config import TrialConfig


class BestTrialCheckpoint:
    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir) / "best_trial"

    def recorded_value(self) -> float:
        try:
            return float(json.loads((self.dir / TRIAL_CONFIG_FILE).read_text())["value"])
        except (FileNotFoundError, KeyError, ValueError):
            return float("-inf")

    def __call__(self, trial: optuna.Trial, cfg: TrialConfig, result: FitResult, value: float) -> None:
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        # read-compare-write as one step: two workers finishing together must not let the worse
        # model land last
        with FileLock(self.dir.parent / ".best_trial.lock", timeout=300):
            if value > self.recorded_value():
                save_model(result.model, cfg, self.dir, extra={"trial_number": trial.number, "value": value,
                                                              "study_name": trial.study.study_name})
