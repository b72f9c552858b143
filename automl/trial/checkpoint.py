"""Save a trained model in SMP's own format (``save_pretrained``) next to its trial config.

The folder loads with plain ``segmentation_models_pytorch.from_pretrained(dir)``; the saved
``encoder_weights`` is always null so that loading never tries to download anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from automl.atomic import atomic_dir
from automl.trial_config import TrialConfig

TRIAL_CONFIG_FILE = "trial_config.json"


def save_model(model: nn.Module, cfg: TrialConfig, out_dir: Path, extra: dict | None = None) -> Path:
    """Write model/config + weights + trial config to ``out_dir`` atomically (tmp dir + rename)."""
    with atomic_dir(Path(out_dir)) as tmp:
        model.save_pretrained(str(tmp))
        conf_path = tmp / "config.json"
        conf = json.loads(conf_path.read_text())
        conf["encoder_weights"] = None
        conf_path.write_text(json.dumps(conf, indent=2, sort_keys=True))
        (tmp / TRIAL_CONFIG_FILE).write_text(json.dumps({"config": cfg.to_dict(), **(extra or {})}, indent=2))
    return Path(out_dir)


def load_model(model_dir: Path) -> tuple[nn.Module, TrialConfig, dict]:
    """(eval-mode model, its trial config, the extra info saved with it)."""
    import segmentation_models_pytorch as smp

    info = json.loads((Path(model_dir) / TRIAL_CONFIG_FILE).read_text())
    model = smp.from_pretrained(str(model_dir)).eval()
    return model, TrialConfig.from_dict(info.pop("config")), info
