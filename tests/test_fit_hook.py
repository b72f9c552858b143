"""`fit(criterion=...)`: the training loss is a hook, called once per step, and it is what training minimises."""

from __future__ import annotations

import numpy as np
import torch

from automl.data.folder import Dataset, Split
from automl.trial.engine import Runtime, fit, seed_everything
from automl.trial.losses import task_criterion
from automl.trial.model import build_model
from automl.trial_config import (
    AugmentSpec,
    DataSpec,
    LossSpec,
    ModelSpec,
    OptimizerSpec,
    ScheduleSpec,
    TrialConfig,
)

CLASSES = ("a", "b", "c")
SIZE, N_TRAIN, BATCH, EPOCHS = 32, 8, 4, 2
CPU = Runtime.resolve("cpu")


def _split(name: str, n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(n)]
    masks = [rng.integers(0, len(CLASSES), (SIZE, SIZE), dtype=np.uint8) for _ in range(n)]
    return Split(name, [f"{name}{i}" for i in range(n)], images, masks)


DATA = Dataset(CLASSES, 255, {"train": _split("train", N_TRAIN, 0), "val": _split("val", 2, 1)})


def _cfg(aux_head: bool = False) -> TrialConfig:
    # Adam without weight decay: a zero gradient leaves every weight exactly where it was
    return TrialConfig(seed=0, epochs=EPOCHS, batch_size=BATCH, data=DataSpec(classes=CLASSES),
                       model=ModelSpec(arch="Unet", encoder="resnet18", encoder_depth=3, aux_head=aux_head),
                       optimizer=OptimizerSpec(name="adam", lr=1e-2), schedule=ScheduleSpec(name="constant"),
                       loss=LossSpec(ce=1.0, dice=0.5, aux=0.3 if aux_head else 0.0),
                       augment=AugmentSpec(crop_height=SIZE, crop_width=SIZE))


def _initial_weights(cfg: TrialConfig) -> dict[str, torch.Tensor]:
    seed_everything(cfg.seed)  # as fit does before it builds the model
    return {k: p.detach().clone() for k, p in build_model(cfg.model, len(CLASSES)).named_parameters()}


def test_criterion_is_called_each_step_with_the_batch_outputs_and_epoch():
    cfg = _cfg(aux_head=True)
    task = task_criterion(cfg, CPU.device)
    calls = []

    def recording(images, masks, outputs, epoch):
        calls.append((images.detach().clone(), masks.clone(), outputs, epoch))
        return task(images, masks, outputs, epoch)

    hooked = fit(cfg, DATA, CPU, criterion=recording)
    steps = N_TRAIN // BATCH
    assert [c[3] for c in calls] == [e for e in range(1, EPOCHS + 1) for _ in range(steps)]
    for images, masks, outputs, _ in calls:
        assert images.shape == (BATCH, 3, SIZE, SIZE) and images.dtype == torch.float32
        assert images.min() < 0 < images.max()  # normalised, as the model sees them
        assert masks.shape == (BATCH, SIZE, SIZE) and masks.dtype == torch.int64
        assert set(masks.unique().tolist()) <= {0, 1, 2}
        logits, class_logits = outputs  # the model's raw output: the aux head's part too
        assert logits.shape == (BATCH, len(CLASSES), SIZE, SIZE) and logits.requires_grad
        assert class_logits.shape == (BATCH, len(CLASSES))
    # the default criterion is the configured task loss: the same training, step for step
    default = fit(cfg, DATA, CPU)
    assert [h.train_loss for h in hooked.history] == [h.train_loss for h in default.history]


def test_the_criterion_loss_is_what_training_minimises():
    cfg = _cfg()
    before = _initial_weights(cfg)

    def zero(images, masks, outputs, epoch):
        return outputs.sum() * 0.0

    frozen = fit(cfg, DATA, CPU, criterion=zero)
    assert [h.train_loss for h in frozen.history] == [0.0] * EPOCHS
    after = dict(frozen.model.named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before), "a zero loss must leave every weight unchanged"

    trained = dict(fit(cfg, DATA, CPU).model.named_parameters())
    assert not all(torch.equal(before[k], trained[k]) for k in before)  # the task loss does move them
