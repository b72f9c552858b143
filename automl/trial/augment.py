"""The albumentations pipelines a trial config describes (train and eval)."""

from __future__ import annotations

import albumentations as A
import cv2

from automl.data.target_crop import TargetCrop
from automl.trial_config import AugmentSpec, DataSpec


def train_transform(aug: AugmentSpec, ignore_index: int) -> A.Compose:
    """Scale, rotation and crop ("rich crop", padded with the ignore label), flips, colour, blur/noise.

    The crop is target-centred (``automl.data.target_crop.TargetCrop``) with probability
    ``aug.target_crop``. ``A.save``/``A.load`` round-trip the result (YAML or JSON).

    Works on uint8 images; normalisation happens on the device.
    """
    h, w = aug.crop_height, aug.crop_width
    steps: list = []
    if (aug.scale_min, aug.scale_max) != (1.0, 1.0):
        steps.append(A.RandomScale(scale_limit=(aug.scale_min - 1.0, aug.scale_max - 1.0), p=1.0))
    if aug.rotate > 0:
        # Before the crop, so the filled corners are the image's, not every crop's. Masks turn
        # with nearest-neighbour (no invented labels); uncovered pixels are ignored by the loss.
        steps.append(A.Rotate(limit=(-aug.rotate, aug.rotate), interpolation=cv2.INTER_LINEAR,
                              mask_interpolation=cv2.INTER_NEAREST, border_mode=cv2.BORDER_CONSTANT, fill=0,
                              fill_mask=ignore_index, p=1.0))
    steps.append(A.PadIfNeeded(min_height=h, min_width=w, border_mode=cv2.BORDER_CONSTANT, fill=0,
                               fill_mask=ignore_index, position="random"))
    steps.append(crop_step(h, w, aug.target_crop, ignore_index))
    if aug.hflip > 0:
        steps.append(A.HorizontalFlip(p=aug.hflip))
    if aug.vflip > 0:
        steps.append(A.VerticalFlip(p=aug.vflip))
    if aug.color_jitter > 0:
        s = aug.color_jitter
        steps.append(A.ColorJitter(brightness=s, contrast=s, saturation=s, hue=min(s / 4, 0.5), p=0.8))
    if aug.blur_noise > 0:
        steps.append(A.OneOf([A.GaussianBlur(sigma_limit=(0.3, 1.2)), A.GaussNoise(std_range=(0.02, 0.08))],
                             p=aug.blur_noise))
    return A.Compose(steps)


def crop_step(h: int, w: int, target_crop: float, ignore_index: int) -> A.BasicTransform:
    """A target-centred crop with probability ``target_crop``, a uniform random crop otherwise."""
    if target_crop <= 0:
        return A.RandomCrop(height=h, width=w)
    target = TargetCrop(height=h, width=w, ignore_index=ignore_index, p=target_crop)
    if target_crop >= 1:
        return target
    return A.OneOf([target, A.RandomCrop(height=h, width=w, p=1.0 - target_crop)], p=1.0)


def eval_transform(data: DataSpec) -> A.Compose:
    """Normalise and pad bottom/right to the divisor; crop predictions back to the input size."""
    return A.Compose([
        A.Normalize(mean=data.mean, std=data.std, max_pixel_value=255.0),
        A.PadIfNeeded(min_height=None, min_width=None, pad_height_divisor=data.pad_divisor,
                      pad_width_divisor=data.pad_divisor, position="top_left", border_mode=cv2.BORDER_CONSTANT,
                      fill=0, fill_mask=data.ignore_index),
    ])
