"""The weighted loss a trial config describes: the registered terms (CE, Dice, ...) + the aux head's."""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from automl import registry
from automl.trial_config import LossSpec, TrialConfig


class Criterion(Protocol):
    """The loss ``fit`` minimises, once per training step.

    ``images`` are the normalised batch as the model sees it, ``masks`` the class indices,
    ``outputs`` the model's raw output (logits, or (logits, class logits) with an aux head) and
    ``epoch`` the 1-based epoch, for losses that change over training. A loss that needs more
    than the task loss (e.g. distillation from a teacher run on ``images``) is a Criterion of its
    own, passed to ``fit``; the training loop stays as it is.
    """

    def __call__(self, images: torch.Tensor, masks: torch.Tensor, outputs: Any, epoch: int) -> torch.Tensor: ...


def task_criterion(cfg: TrialConfig, device: torch.device) -> Criterion:
    """The configured task loss (cfg.loss) as a Criterion: ``fit``'s default."""
    loss = SegmentationLoss(cfg.loss, cfg.data.num_classes, cfg.data.ignore_index).to(device)

    def criterion(images: torch.Tensor, masks: torch.Tensor, outputs: Any, epoch: int) -> torch.Tensor:
        if isinstance(outputs, (tuple, list)):  # SMP models with an aux head
            return loss(outputs[0], masks, outputs[1])
        return loss(outputs, masks)

    return criterion


class SegmentationLoss(nn.Module):
    def __init__(self, spec: LossSpec, num_classes: int, ignore_index: int):
        super().__init__()
        self.spec, self.num_classes, self.ignore_index = spec, num_classes, ignore_index
        weights = ((getattr(spec, name), build) for name, build in registry.LOSS_TERMS.items())
        self.terms: list[tuple[float, nn.Module]] = [(w, build(ignore_index)) for w, build in weights if w > 0]

    def forward(self, logits: torch.Tensor, target: torch.Tensor, aux_logits: torch.Tensor | None = None):
        logits = logits.float()
        loss = sum(w * fn(logits, target) for w, fn in self.terms)
        if aux_logits is not None and self.spec.aux > 0:
            loss = loss + self.spec.aux * F.binary_cross_entropy_with_logits(aux_logits.float(),
                                                                             self.presence(target))
        return loss

    def presence(self, target: torch.Tensor) -> torch.Tensor:
        """Which classes appear in each image: the aux classification head's target."""
        valid = target != self.ignore_index
        onehot = torch.zeros(target.shape[0], self.num_classes + 1, device=target.device)
        idx = torch.where(valid, target, torch.full_like(target, self.num_classes)).flatten(1)
        onehot.scatter_(1, idx, 1.0)
        return onehot[:, : self.num_classes]
