"""Which architecture × encoder pairs work at the study's input size.

SMP's rules are scattered (DPT takes only ``tu-`` encoders, ``mit_b*`` is rejected by
UnetPlusPlus and Linknet, PSPNet/FPN change output stride with depth, PAN needs enough
resolution at depth 5), so instead of copying them we build each pair once and check that
it returns logits of the input's size. Incompatible pairs are never sampled.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import torch

from automl.trial.model import build_model
from automl.trial_config import ModelSpec

log = logging.getLogger(__name__)


@lru_cache(maxsize=256)
def pair_problem(arch: str, encoder: str, depth: int, height: int, width: int) -> str | None:
    """None when the pair builds and maps (1,3,H,W) → (1,C,H,W); else the reason."""
    try:
        model = build_model(ModelSpec(arch=arch, encoder=encoder, encoder_depth=depth), num_classes=2).eval()
        with torch.no_grad():
            out = model(torch.zeros(1, 3, height, width))
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    if isinstance(out, tuple):
        out = out[0]
    if tuple(out.shape[-2:]) != (height, width):
        return f"output {tuple(out.shape[-2:])} != input {(height, width)}"
    return None


def compatible_pairs(architectures: list[str], encoders: list[str], depths: tuple[int, ...],
                     size: tuple[int, int]) -> tuple[list[str], dict[str, str]]:
    """("Arch/encoder" usable at every depth, {dropped pair: reason})."""
    ok, dropped = [], {}
    for arch in architectures:
        for enc in encoders:
            name = f"{arch}/{enc}"
            for d in depths:
                problem = pair_problem(arch, enc, d, *size)
                if problem:
                    dropped[name] = f"depth {d}: {problem}"
                    break
            else:
                ok.append(name)
    for name, why in dropped.items():
        log.info("never sampled: %s (%s)", name, why)
    return ok, dropped
