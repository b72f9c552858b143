"""AutoML for semantic segmentation.

The package follows the flow of a run: ``data`` → ``space`` → ``trial`` → ``study`` →
``final`` → ``bundle``. One :class:`~automl.trial_config.TrialConfig` carries every
decision from the search to the retrain to the bundle.
"""

import os

# albumentations 2.0.x checks PyPI for updates at import time unless told not to; a
# search running on an offline cluster must not stall on that.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
