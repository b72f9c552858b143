"""AutoML for semantic segmentation.

The package follows the flow of a run: ``data`` → ``space`` → ``trial`` → ``study`` →
``final`` → ``bundle``. One :class:`~automl.trial_config.TrialConfig` carries every
decision from the search to the retrain to the bundle.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from automl.bundle.predictor import Predictor

# albumentations 2.0.x checks PyPI for updates at import time unless told not to; a
# search running on an offline cluster must not stall on that.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"


def load_bundle(path: str | os.PathLike, **kwargs) -> Predictor:
    """A predictor for a bundle written by ``automl final``; see :func:`automl.bundle.load_bundle`."""
    from automl.bundle import load_bundle as _load_bundle

    return _load_bundle(path, **kwargs)
