"""Build the SMP model a trial config describes."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from automl.trial_config import ModelSpec

# SMP's Unet-family decoders default to five blocks; with a shallower encoder they need as many
# decoder channels as encoder stages.
_DECODER_CHANNELS = (256, 128, 64, 32, 16)
_UNET_FAMILY = {"Unet", "UnetPlusPlus", "MAnet"}


def model_kwargs(spec: ModelSpec, num_classes: int) -> dict:
    """Keyword arguments for ``smp.create_model`` (also what ``save_pretrained`` records)."""
    kwargs: dict = dict(arch=spec.arch, encoder_name=spec.encoder, encoder_depth=spec.encoder_depth,
                        classes=num_classes, encoder_weights=None)
    if spec.encoder_weights == "imagenet":
        kwargs["encoder_weights"] = "imagenet"
    if spec.arch in _UNET_FAMILY:
        kwargs["decoder_channels"] = _DECODER_CHANNELS[: spec.encoder_depth]
    if spec.arch == "PSPNet":
        kwargs["upsampling"] = 2 ** spec.encoder_depth
    if spec.aux_head:
        kwargs["aux_params"] = {"classes": num_classes, "dropout": 0.2}
    return kwargs


def build_model(spec: ModelSpec, num_classes: int) -> nn.Module:
    import segmentation_models_pytorch as smp

    model = smp.create_model(**model_kwargs(spec, num_classes))
    if spec.encoder_weights not in (None, "imagenet"):
        load_encoder_weights(model, Path(spec.encoder_weights))
    return model


def load_encoder_weights(model: nn.Module, path: Path) -> None:
    """Load a local encoder checkpoint (timm or torchvision layout) into the model's encoder.

    Written by hand because SMP only knows named weight sets it downloads; offline users point
    at a file instead. Keys are matched against the encoder and, for ``tu-`` encoders, the
    wrapped timm model; a file that matches neither is an error, not a silent random init.
    """
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights file not found: {path.name}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    targets = [model.encoder]
    if hasattr(model.encoder, "model"):
        targets.insert(0, model.encoder.model)
    for target in targets:
        own = target.state_dict()
        matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if len(matched) >= 0.9 * len(own):
            target.load_state_dict(matched, strict=False)
            return
    raise ValueError(f"encoder weights {path.name} do not match encoder parameters")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
