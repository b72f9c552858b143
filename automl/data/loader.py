"""Torch-side data: augmented training crops from in-memory arrays, device-side normalisation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from automl.data.folder import Split


class TrainCrops(TorchDataset):
    """Applies an albumentations transform to uint8 arrays; yields uint8 CHW + int64 mask."""

    def __init__(self, split: Split, transform):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        out = self.transform(image=self.split.images[i], mask=self.split.masks[i])
        img = np.ascontiguousarray(out["image"].transpose(2, 0, 1))
        return torch.from_numpy(img), torch.from_numpy(out["mask"].astype(np.int64))


def train_loader(split: Split, transform, *, batch_size: int, seed: int, num_workers: int,
                 pin_memory: bool) -> DataLoader:
    # albumentations 2 draws from its own generators, seeded from OS entropy unless told:
    # seed them so that a rerun of a trial reproduces its augmentations.
    transform.set_random_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        TrainCrops(split, transform), batch_size=batch_size, shuffle=True, drop_last=len(split) > batch_size,
        num_workers=num_workers, pin_memory=pin_memory, generator=gen,
        persistent_workers=num_workers > 0,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
    )


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # distinct per worker and epoch, derived from the loader's generator
    np.random.seed(seed)
    import random

    random.seed(seed)
    torch.utils.data.get_worker_info().dataset.transform.set_random_seed(seed)


class Normalizer:
    """uint8 NCHW batch → normalised float on the device (cheaper than on the CPU workers)."""

    def __init__(self, mean, std, device: torch.device, channels_last: bool = False):
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        self.device, self.channels_last = device, channels_last

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).float().sub_(self.mean).div_(self.std)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def eval_batches(split: Split, indices: list[int], batch_size: int):
    """Yield (indices, uint8 NCHW, int64 NHW) batches of same-size images in the given order."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for i in indices:
        by_size.setdefault(split.shapes[i], []).append(i)  # from the split: no record is read for it
    for group in by_size.values():
        for k in range(0, len(group), batch_size):
            idx = group[k:k + batch_size]
            imgs = torch.from_numpy(np.stack([split.images[i] for i in idx]).transpose(0, 3, 1, 2))
            masks = torch.from_numpy(np.stack([split.masks[i] for i in idx]).astype(np.int64))
            yield idx, imgs, masks
