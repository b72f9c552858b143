"""Train and evaluate one trial config. Used by the search, the final retrain and ``rerun``.

The loop knows nothing about Optuna: it calls ``on_epoch`` after each evaluation, and that
callback may stop it (by raising, e.g. ``optuna.TrialPruned``).
"""

from __future__ import annotations

import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Collection

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from automl.data.folder import Dataset, Split
from automl.data.loader import Normalizer, eval_batches, train_loader
from automl.trial.augment import train_transform
from automl.trial.length import Length
from automl.trial.losses import Criterion, task_criterion
from automl.trial.metrics import ConfusionMatrix, mean_iou, per_class_iou
from automl.trial.model import build_model
from automl.trial.optim import build_optimizer, build_scheduler
from automl.trial_config import TrialConfig


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


class TrialTimeout(RuntimeError):
    """The trial ran past its time limit."""


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors run: device, mixed precision, memory format."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    # Synchronise around the training step so compute time is exact on CUDA. Off by default:
    # a sync per step stops the host from queueing the next batch while the GPU works.
    exact_timing: bool = False

    @classmethod
    def resolve(cls, name: str = "auto") -> Runtime:
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(name)
        if device.type == "cuda":
            # bf16 needs no loss scaling; older GPUs fall back to fp16 with a GradScaler.
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            torch.backends.cudnn.benchmark = True
            return cls(device, dtype, channels_last=True)
        return cls(device)

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def timing_barrier(self) -> None:
        if self.exact_timing and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def loader_workers(setting: int | None, runtime: Runtime) -> int:
    """DataLoader workers for one trial: ``setting`` if given, else 0 on a CPU (its cores do the
    training; loader workers would compete with it) and, on CUDA, one per CPU thread of this
    process, at most 8: on CUDA the pipeline needs workers to keep up with the model and gains
    nothing past 8 (benchmarks/README.md, GPU check); `automl worker` processes packed on a GPU
    split the threads."""
    if setting is not None:
        return setting
    if runtime.device.type != "cuda":
        return 0
    return max(1, min(8, torch.get_num_threads()))


@dataclass
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    miou: float
    per_class_iou: list[float]
    full_val: bool
    seconds: float
    lr: float = float("nan")  # the learning rate at the end of the epoch
    step: int | None = None  # the pruner step this score is reported at (None: not reported)


@dataclass
class TimeStats:
    """Where a run's time went, fixed costs apart from per-epoch ones: `automl run` prices a final
    epoch at the steady epoch's training time, and the final's fixed costs separately."""

    compute_s: float = 0.0  # forward + backward + optimizer step
    train_s: float = 0.0    # whole training epochs (compute + data + transfers)
    eval_s: float = 0.0
    setup_s: float = 0.0    # model build, loader, optimizer: before the first epoch
    epoch_train_s: list[float] = field(default_factory=list)  # each epoch's training, scored or not
    eval_full_s: list[float] = field(default_factory=list)    # each val pass on all of val
    eval_subset_s: list[float] = field(default_factory=list)  # each pass on the val subset
    hooks_s: float = 0.0    # the search's completed hooks (best weights, predictions)


@dataclass
class FitResult:
    model: nn.Module
    history: list[EpochResult] = field(default_factory=list)
    times: TimeStats = field(default_factory=TimeStats)
    epochs: int = 0  # trained, which a re-planned Length may have changed


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def subset_indices(n: int, fraction: float) -> list[int]:
    """A fixed, evenly spaced subset: the same images for every trial."""
    k = max(1, round(n * fraction))
    return sorted({int(i) for i in np.linspace(0, n - 1, k).round()})


def logits_of(output) -> torch.Tensor:
    """SMP models with an aux head return (mask logits, class logits)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def forward_padded(model: nn.Module, x: torch.Tensor, divisor: int) -> torch.Tensor:
    """Pad bottom/right to a multiple of ``divisor``, run, and crop the logits back."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % divisor, (-w) % divisor
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return logits_of(model(x))[..., :h, :w]


@torch.no_grad()
def confusion_on(model: nn.Module, split: Split, indices: list[int], cfg: TrialConfig, runtime: Runtime,
                 normalize: Normalizer, batch_size: int) -> np.ndarray:
    model.eval()
    cm = ConfusionMatrix(cfg.data.num_classes, cfg.data.ignore_index, runtime.device)
    for _, imgs, masks in eval_batches(split, indices, batch_size):
        with runtime.autocast():
            logits = forward_padded(model, normalize(imgs), cfg.data.pad_divisor)
        cm.update(logits.argmax(1), masks.to(runtime.device, non_blocking=True))
    return cm.numpy()


# After each optimizer step: (model, steps taken, steps the schedule now spans)
StepHook = Callable[[nn.Module, int, int], None]


def fit(cfg: TrialConfig, data: Dataset, runtime: Runtime, *,
        on_epoch: Callable[[EpochResult], None] | None = None,
        train_split: Split | None = None,
        eval_subset: float = 1.0, eval_batch_size: int = 8, num_workers: int | None = None,
        deadline: float | None = None, times: TimeStats | None = None,
        eval_epochs: Collection[int] | None = None, criterion: Criterion | None = None,
        length: Length | None = None, on_step: StepHook | None = None) -> FitResult:
    """Train ``cfg.epochs`` epochs; evaluate val mIoU after each epoch in ``eval_epochs`` (default
    every epoch) on the val subset, and after the last one on the full val split.

    ``length`` replaces both (and ``cfg.schedule_span``): how long to train and which epochs to
    score, possibly re-planned from measured time (:mod:`automl.trial.length`).

    Each step minimises ``criterion`` (default: the task loss cfg.loss describes); ``on_step`` is
    called after each optimizer step (e.g. a weight average, :mod:`automl.trial.ema`)."""
    t_setup = time.perf_counter()
    seed_everything(cfg.seed)
    train_split = train_split or data.train
    model = build_model(cfg.model, cfg.data.num_classes).to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if criterion is None:
        criterion = task_criterion(cfg, runtime.device)
    loader = train_loader(train_split, train_transform(cfg.augment, cfg.data.ignore_index),
                          batch_size=cfg.batch_size, seed=cfg.seed, num_workers=loader_workers(num_workers, runtime),
                          pin_memory=runtime.device.type == "cuda")
    optimizer = build_optimizer(model.parameters(), cfg.optimizer)
    length = length or Length(cfg.epochs, cfg.schedule_span, eval_epochs)
    length.start(len(loader))
    scheduler = build_scheduler(optimizer, cfg.schedule, length.span)
    scaler = torch.amp.GradScaler(enabled=runtime.amp_dtype == torch.float16)
    normalize = Normalizer(cfg.data.mean, cfg.data.std, runtime.device, runtime.channels_last)
    val_all = list(range(len(data.val)))
    val_subset = subset_indices(len(data.val), eval_subset)
    result = FitResult(model, times=times if times is not None else TimeStats())
    ts = result.times
    # a retried fit (out of memory) measures its own epochs; the totals stay the trial's
    ts.epoch_train_s, ts.eval_full_s, ts.eval_subset_s = [], [], []
    ts.setup_s += time.perf_counter() - t_setup

    epoch = 0
    while epoch < length.epochs:
        epoch += 1
        t_epoch = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=runtime.device)
        steps = 0
        for imgs, masks in loader:
            if deadline is not None and time.monotonic() > deadline:
                raise TrialTimeout(f"time limit reached in epoch {epoch}")
            x, y = normalize(imgs), masks.to(runtime.device, non_blocking=True)
            runtime.timing_barrier()
            t0 = time.perf_counter()
            with runtime.autocast():
                loss = criterion(x, y, model(x), epoch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if on_step is not None:
                on_step(model, scheduler.last_epoch, length.span.steps)
            runtime.timing_barrier()
            ts.compute_s += time.perf_counter() - t0
            loss_sum += loss.detach()
            steps += 1
            if steps % 25 == 0 and not torch.isfinite(loss_sum):
                raise NonFiniteLoss(f"loss is {loss_sum.item()} at epoch {epoch}, step {steps}")
        train_loss = loss_sum.item() / max(1, steps)
        if not np.isfinite(train_loss):
            raise NonFiniteLoss(f"loss is {train_loss} at epoch {epoch}")
        t_eval = time.perf_counter()
        ts.train_s += t_eval - t_epoch
        ts.epoch_train_s.append(t_eval - t_epoch)
        result.epochs = epoch
        length.after_epoch(epoch, ts.epoch_train_s)
        full = epoch >= length.epochs
        if not full and not length.scored(epoch, ts.epoch_train_s):
            continue  # nobody reads this epoch's score: skip the evaluation
        cm = confusion_on(model, data.val, val_all if full else val_subset, cfg, runtime, normalize, eval_batch_size)
        pass_s = time.perf_counter() - t_eval
        ts.eval_s += pass_s
        (ts.eval_full_s if full or len(val_subset) == len(val_all) else ts.eval_subset_s).append(pass_s)
        iou = per_class_iou(cm)
        res = EpochResult(epoch, train_loss, mean_iou(cm), [None if np.isnan(v) else float(v) for v in iou],
                          full, time.perf_counter() - t_epoch, optimizer.param_groups[0]["lr"],
                          length.step(epoch, ts.epoch_train_s, full))
        result.history.append(res)
        if on_epoch is not None:
            on_epoch(res)
    return result
