"""Retrain the chosen config for the final schedule; keep the weights so a later failure can reuse them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from automl.data.folder import Dataset, Split
from automl.trial.checkpoint import TRIAL_CONFIG_FILE, load_model, save_model
from automl.trial.ema import WeightAverage
from automl.trial.engine import EpochResult, FitResult, Runtime, TimeStats, fit
from automl.trial.length import FinishBy, eval_epochs
from automl.trial.losses import Criterion
from automl.trial_config import TrialConfig

log = logging.getLogger(__name__)


def trainval_split(data: Dataset) -> Split:
    """Train and the selection split, once every decision is taken; never the holdout."""
    tr, va = data.train, data.val
    return Split("trainval", [f"train/{s}" for s in tr.stems] + [f"val/{s}" for s in va.stems],
                 tr.images + va.images, tr.masks + va.masks, tr.shapes + va.shapes)


@dataclass(frozen=True)
class TrainUntil:
    """`automl run`'s final: training and its val passes end at ``finish_by`` (time.monotonic());
    the retrain re-plans its epoch count after epoch 2 (:class:`automl.trial.length.FinishBy`).
    The passes are priced from the selected trial until the retrain has measured its own."""

    finish_by: float
    subset_pass_s: float = 0.0
    full_pass_s: float = 0.0
    min_epochs: int = 1
    # when the whole final (bundle written) must end: the latency timing shrinks to fit
    done_by: float | None = None
    # a subset val pass's seconds → a new finish_by (the work after the retrain re-priced)
    retime: Callable[[float], float] | None = None
    # the time is shared with runs - 1 later runs at this one's epochs (FinishBy's epoch_cost, runs)
    epoch_cost: Callable[[float], float] | None = None
    runs: int = 1


def retrain(cfg: TrialConfig, data: Dataset, runtime: Runtime, *, train_on_trainval: bool = False,
            eval_subset: float = 1.0, eval_points: int = 4, eval_batch_size: int = 8,
            num_workers: int = 0, until: TrainUntil | None = None,
            average: WeightAverage | None = None, criterion: Criterion | None = None,
            name: str = "final retrain") -> FitResult:
    """Train ``cfg`` from scratch; val scored at ``eval_points`` epochs (on a subset except the last
    epoch), one log line each. ``until``: re-plan ``cfg.epochs`` to end at that time; ``average``:
    a weight average updated after each step (its model is read after training); ``criterion``:
    another loss than the task's (a student's distillation); ``name``: what the log calls it."""
    split = trainval_split(data) if train_on_trainval else data.train
    log.info("%s: %s, %d epochs on %d %s images (seed %d)", name, cfg.summary(), cfg.epochs, len(split),
             split.name, cfg.seed)

    times = TimeStats()
    length = None
    if until is not None:
        length = FinishBy(cfg.epochs, until.finish_by, eval_points=eval_points, subset_pass_s=until.subset_pass_s,
                          full_pass_s=until.full_pass_s, min_epochs=until.min_epochs,
                          subset_passes=lambda: times.eval_subset_s, retime=until.retime,
                          epoch_cost=until.epoch_cost, runs=until.runs)

    def on_epoch(res: EpochResult) -> None:
        scope = "val" if res.full_val else f"val subset {eval_subset:.0%}"
        total = cfg.epochs if length is None else length.epochs
        log.info("%s epoch %d/%d: loss %.4f, %s mIoU %.4f (%.1f s)", name.split()[0], res.epoch, total,
                 res.train_loss, scope, res.miou, res.seconds)

    return fit(cfg, data, runtime, on_epoch=on_epoch, train_split=split, eval_subset=eval_subset,
               eval_batch_size=eval_batch_size, num_workers=num_workers, times=times, length=length,
               eval_epochs=eval_epochs(cfg.epochs, eval_points), on_step=average, criterion=criterion)


FINAL_MODEL_DIR = "final_model"


@dataclass
class Retrained:
    model: nn.Module
    history: list[dict]   # per epoch: epoch, train_loss, val_miou, full_val, seconds
    wall_s: float
    device: str
    reused: bool = False
    # the weight-average decision (automl.final.pipeline._average_or_trained), None when off
    weight_average: dict | None = None


def history_rows(history: list[EpochResult]) -> list[dict]:
    return [{"epoch": h.epoch, "train_loss": round(h.train_loss, 5), "val_miou": round(h.miou, 5),
             "full_val": h.full_val, "seconds": round(h.seconds, 2)} for h in history]


def save_retrained(run_dir: Path, cfg: TrialConfig, trained: Retrained, *, train_on_trainval: bool,
                   trial_number: int, data_split: dict | None = None, folder: str = FINAL_MODEL_DIR,
                   extra: dict | None = None) -> Path:
    """Keep the retrained weights (``runs/<study>/final_model``) before the later steps run, so a
    failure there does not cost the retrain: ``automl final --reuse-model`` picks them up.
    ``data_split``: the data's split record (:func:`automl.data.split.split_record`). ``cfg`` is
    the planned config: a retrain re-planned to its budget is kept with the epochs it trained and
    the plan it came from, so that a resumed run with the same plan reuses it. ``folder``: another
    model of the final stage (a student); ``extra``: what else must match for a reuse."""
    trained_epochs = trained.history[-1]["epoch"] if trained.history else cfg.epochs
    return save_model(trained.model, cfg.with_changes(epochs=trained_epochs), Path(run_dir) / folder, extra={
        **(extra or {}),
        "planned_epochs": cfg.epochs,
        "stage": "final_retrain", "train_on_trainval": train_on_trainval, "trial_number": trial_number,
        "history": trained.history, "wall_s": round(trained.wall_s, 1), "device": trained.device,
        "data_split": data_split, "weight_average": trained.weight_average})


def _same_split(saved: dict | None, now: dict | None) -> bool:
    if now is None:  # the caller does not know the split: config and train_on_trainval decide
        return True
    if saved is None:  # kept before splits were recorded: trained without a carved split
        return now.get("val_fraction") is None
    return saved == now


def load_retrained(run_dir: Path, cfg: TrialConfig, train_on_trainval: bool,
                   data_split: dict | None = None, folder: str = FINAL_MODEL_DIR,
                   extra: dict | None = None) -> Retrained | None:
    """The kept retrained model (in ``folder``) if it was trained from exactly ``cfg`` on the same
    split (the data's split record, when given) with the same ``extra`` items, else None."""
    want = extra or {}
    folder = Path(run_dir) / folder
    if not (folder / TRIAL_CONFIG_FILE).is_file():
        log.info("no retrained model to reuse in %s", folder)
        return None
    model, saved, info = load_model(folder)
    if info.get("planned_epochs") == cfg.epochs:
        saved = saved.with_changes(epochs=cfg.epochs)  # re-planned from the same plan
    if saved != cfg or info.get("train_on_trainval") != train_on_trainval or \
            not _same_split(info.get("data_split"), data_split) or any(info.get(k) != v for k, v in want.items()):
        log.info("not reusing %s: it was trained from another config or split", folder)
        return None
    return Retrained(model, list(info.get("history", [])), float(info.get("wall_s", 0.0)),
                     str(info.get("device", "?")), reused=True, weight_average=info.get("weight_average"))
