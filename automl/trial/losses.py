"""The weighted loss a trial config describes: the registered terms (CE, Dice, ...) + the aux head's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from automl.space import registry
from automl.trial_config import LossSpec


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
