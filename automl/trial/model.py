"""Build the SMP model a trial config describes, and check before a search that its encoder
weights can be had."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from automl.errors import ConfigError
from automl.terminal import visible
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


@dataclass(frozen=True)
class WeightsSource:
    """Where SMP gets an encoder's ImageNet weights: a Hugging Face repo (SMP's own encoders:
    ``smp-hub/<name>.imagenet``; ``tu-`` encoders: timm's ``hf_hub_id``, e.g.
    ``timm/mobilenetv3_small_100.lamb_in1k``), or for a timm model without one, a URL that
    torch hub caches."""

    repo_id: str | None
    # every group needs one cached file (the names in a group are alternatives: timm reads
    # model.safetensors when the repo has it, else pytorch_model.bin)
    files: tuple[tuple[str, ...], ...] = ()
    revision: str | None = None
    url: str | None = None

    @property
    def name(self) -> str:
        return self.repo_id or str(self.url)


def imagenet_source(encoder: str) -> WeightsSource | None:
    """Where ``smp.create_model(encoder_weights="imagenet")`` would load ``encoder``'s weights
    from; None when SMP/timm have no ImageNet weights for it."""
    if encoder.startswith("tu-"):
        import timm

        cfg = timm.models.get_pretrained_cfg(encoder[3:])
        if cfg is None:
            return None
        if cfg.hf_hub_id:
            repo, _, revision = cfg.hf_hub_id.partition("@")
            files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
            return WeightsSource(repo, (files,), revision or None)
        return WeightsSource(None, url=cfg.url) if cfg.url else None
    from segmentation_models_pytorch.encoders import encoders

    settings = encoders.get(encoder, {}).get("pretrained_settings", {}).get("imagenet")
    if settings is None:
        return None
    # SMP downloads both files (get_encoder): the config first, then the weights
    return WeightsSource(settings["repo_id"], (("config.json",), ("model.safetensors",)), settings.get("revision"))


def hf_cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def weights_cached(source: WeightsSource) -> bool:
    """Whether ``source``'s files are all in the Hugging Face cache (or, for a URL, in torch hub's
    checkpoint folder): SMP can then build the model without the network."""
    if source.repo_id is None:
        return (Path(torch.hub.get_dir()) / "checkpoints" / Path(str(source.url)).name).is_file()
    from huggingface_hub import try_to_load_from_cache

    return all(any(isinstance(try_to_load_from_cache(source.repo_id, f, revision=source.revision), str)
                   for f in group) for group in source.files)


def _hub_reachable(source: WeightsSource) -> str | None:
    """None when the hub answers for ``source``'s first file (a metadata request; nothing is
    downloaded), else why not."""
    import huggingface_hub

    if huggingface_hub.is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    if source.repo_id is None:
        return "timm downloads it from a URL, which is not checked here"
    url = huggingface_hub.hf_hub_url(source.repo_id, source.files[0][0], revision=source.revision)
    try:
        huggingface_hub.get_hf_file_metadata(url, timeout=5)
    except Exception as exc:  # noqa: BLE001 - any failure means the trial's download would fail too
        return f"the hub cannot be reached ({type(exc).__name__})"
    return None


def imagenet_unavailable(encoder: str, *, probe: bool = True) -> str | None:
    """Why ``encoder``'s ImageNet weights cannot be had on this machine; None when they can.

    Had means cached (Hugging Face cache, or torch hub's for a URL), or, with ``probe``, a
    download that would work: the hub answers a metadata request. Never downloads.
    """
    source = imagenet_source(encoder)
    if source is None:
        return "SMP and timm have no ImageNet weights for it"
    if weights_cached(source):
        return None
    missing = f"not in the Hugging Face cache ({hf_cache_dir()}: {source.name})"
    if not probe:
        return missing
    why = _hub_reachable(source)
    return None if why is None else f"{missing} and {why}"


def fill_cache_command(encoders: list[str]) -> str:
    """The command that fills the cache for ``encoders`` (run where there is internet)."""
    names = [s.repo_id for s in map(imagenet_source, encoders) if s is not None and s.repo_id]
    return f"hf download {' '.join(dict.fromkeys(names))}" if names else ""


def check_encoder_weights(weights: str | None, encoders: list[str], where: str) -> None:
    """Refuse, before any trial, encoder weights the trials could not load: ImageNet weights that
    are neither cached nor downloadable here, or a local file that does not exist. Otherwise
    every trial would fail on its own, one after another, for the same reason."""
    if weights is None:
        return
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(visible(f"{where}: encoder weights file not found: {path}. Give an existing file, "
                                      "`imagenet`, or null (random init)"))
        return
    problems = {e: why for e in encoders if (why := imagenet_unavailable(e)) is not None}
    if not problems:
        return
    fill = fill_cache_command(list(problems))
    lines = [f"{where}: imagenet, but this machine cannot get the weights of {len(problems)} encoder(s):",
             *(f"  {e}: {why}" for e, why in problems.items()),
             "Either set `encoder_weights: null` (random init), give a local weights file (`encoder_weights: "
             "path/to/weights.safetensors`), or pre-fill the cache: on a machine with internet run "
             + (f"`{fill}` and copy" if fill else "SMP once and copy") + f" its Hugging Face cache to {hf_cache_dir()} "
             "(or point HF_HUB_CACHE at it)"]
    raise ConfigError(visible("\n".join(lines)))
