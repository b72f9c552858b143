"""Knowledge distillation: a student trained on the task loss plus a term that pulls its logits
towards a frozen teacher's, both run on the same augmented batch.

Each method is registered once in :data:`KD_METHODS` with its loss and its defaults; the study
file names them (``final.distill.method``, :data:`automl.config.KD_METHOD_NAMES`, checked against
this table by a test). Pixels the masks mark ``ignore_index`` never enter a KD term: they carry
no label, and a teacher's guess there is no knowledge worth copying (crop padding is one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from automl.trial.engine import forward_padded, logits_of
from automl.trial.length import steady_epoch_s
from automl.trial.losses import task_criterion
from automl.trial_config import TrialConfig

# A term: (student logits, teacher logits, valid-pixel mask N×H×W, temperature) → scalar
KDLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


def pixel_kl(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor, t: float) -> torch.Tensor:
    """KL(teacher ‖ student) of the class distributions at each pixel, softened by ``t`` and
    scaled by t² (Hinton et al., 2015, so that its gradients keep their size as t changes),
    averaged over the labelled pixels."""
    log_s = F.log_softmax(student / t, dim=1)
    log_t = F.log_softmax(teacher / t, dim=1)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=1)  # N×H×W
    w = valid.to(kl.dtype)
    return (kl * w).sum() / w.sum().clamp_min(1.0) * t * t


def channel_wise(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor, t: float) -> torch.Tensor:
    """Channel-wise distillation (Shu et al., ICCV 2021): each class channel's logits become a
    distribution over the image's labelled pixels (softmax over space at ``t``); the KL between
    the teacher's and the student's, per channel, averaged over channels and images, times t²."""
    n, c = student.shape[:2]
    keep = valid.unsqueeze(1).expand(-1, c, -1, -1).reshape(n, c, -1)
    # unlabelled pixels leave the distribution: their logit is far below any real one
    s = (student / t).reshape(n, c, -1).masked_fill(~keep, -1e4)
    q = (teacher / t).reshape(n, c, -1).masked_fill(~keep, -1e4)
    log_s, log_t = F.log_softmax(s, dim=2), F.log_softmax(q, dim=2)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=2)  # N×C
    has = valid.reshape(n, -1).any(dim=1).to(kl.dtype).unsqueeze(1)  # an image with no label adds nothing
    return (kl * has).sum() / (has.sum() * c).clamp_min(1.0) * t * t


@dataclass(frozen=True)
class KDMethod:
    loss: KDLoss
    weight: float
    temperature: float
    why: str  # where the defaults come from, for the report


KD_METHODS: dict[str, KDMethod] = {
    # Hinton's soft targets at every pixel; weight 1 and t = 1: the pixel-wise KD baseline of the
    # segmentation KD literature (CWD and CIRKD compare against it so)
    "logits": KDMethod(pixel_kl, weight=1.0, temperature=1.0,
                       why="pixel-wise KL, t=1, weight 1 (the pixel-wise KD baseline of CWD/CIRKD)"),
    # CWD on the logits: the paper's segmentation setting, t = 4 and loss weight 3
    "cwd": KDMethod(channel_wise, weight=3.0, temperature=4.0,
                    why="channel-wise KL over space, t=4, weight 3 (Shu et al., ICCV 2021)"),
}


@dataclass(frozen=True)
class KDSpec:
    method: str
    weight: float
    temperature: float

    @classmethod
    def of(cls, method: str, weight: float | None = None, temperature: float | None = None) -> KDSpec:
        """The method with its defaults where ``weight``/``temperature`` are None."""
        m = KD_METHODS[method]
        return cls(method, m.weight if weight is None else weight, m.temperature if temperature is None else temperature)

    def as_dict(self) -> dict:
        return {"method": self.method, "weight": self.weight, "temperature": self.temperature,
                "defaults": KD_METHODS[self.method].why}


def frozen(teacher: nn.Module) -> nn.Module:
    """The teacher as distillation uses it: eval mode (BatchNorm statistics and dropout fixed),
    no gradients."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class DistillCriterion:
    """The student's task loss (its own cfg.loss) plus ``spec.weight`` × the KD term against
    ``teacher`` run, without gradients, on the same normalised batch. It clocks the teacher's
    forward passes per epoch: what a run of the student alone saves (:meth:`teacher_epoch_s`)."""

    def __init__(self, cfg: TrialConfig, teacher: nn.Module, teacher_divisor: int, spec: KDSpec,
                 device: torch.device):
        self.task = task_criterion(cfg, device)
        self.kd = KD_METHODS[spec.method].loss
        self.teacher, self.divisor, self.spec = frozen(teacher.to(device)), teacher_divisor, spec
        self.ignore = cfg.data.ignore_index
        self.teacher_s: dict[int, float] = {}  # epoch → seconds in the teacher's forward passes

    def __call__(self, images: torch.Tensor, masks: torch.Tensor, outputs: Any, epoch: int) -> torch.Tensor:
        # On CUDA the forward is queued, not run, when the clock stops: the teacher is under-counted,
        # which prices the student alone high (its run then ends early, never late).
        t0 = time.perf_counter()
        with torch.no_grad():
            t_logits = forward_padded(self.teacher, images, self.divisor)
        self.teacher_s[epoch] = self.teacher_s.get(epoch, 0.0) + time.perf_counter() - t0
        s_logits = logits_of(outputs)
        term = self.kd(s_logits.float(), t_logits.float(), masks != self.ignore, self.spec.temperature)
        return self.task(images, masks, outputs, epoch) + self.spec.weight * term

    def teacher_epoch_s(self) -> float:
        """The teacher's seconds in one steady epoch (past the warm-up), 0 before any."""
        return steady_epoch_s([self.teacher_s[e] for e in sorted(self.teacher_s)]) or 0.0

