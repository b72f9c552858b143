"""The albumentations pipelines a trial config describes (train and eval)."""

from __future__ import annotations

import cv2

import albumentations as A

from automl.trial_config import AugmentSpec, DataSpec


def train_transform(aug: AugmentSpec, ignore_index: int) -> A.Compose:
    """Scale-and-crop ("rich crop", padded with the ignore label), flips, colour, blur/noise.

    Works on uint8 images; normalisation happens on the device.
    """
    h, w = aug.crop_height, aug.crop_width
    steps: list = []
    if (aug.scale_min, aug.scale_max) != (1.0, 1.0):
        steps.append(A.RandomScale(scale_limit=(aug.scale_min - 1.0, aug.scale_max - 1.0), p=1.0))
    steps.append(A.PadIfNeeded(min_height=h, min_width=w, border_mode=cv2.BORDER_CONSTANT, fill=0,
                               fill_mask=ignore_index, position="random"))
    if aug.target_crop > 0:
        # Crop around labelled pixels with probability target_crop, anywhere otherwise.
        steps.append(A.OneOf([
            A.CropNonEmptyMaskIfExists(height=h, width=w, ignore_values=[ignore_index], p=aug.target_crop),
            A.RandomCrop(height=h, width=w, p=1.0 - aug.target_crop),
        ], p=1.0))
    else:
        steps.append(A.RandomCrop(height=h, width=w))
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


def eval_transform(data: DataSpec) -> A.Compose:
    """Normalise and pad bottom/right to the divisor; crop predictions back to the input size."""
    return A.Compose([
        A.Normalize(mean=data.mean, std=data.std, max_pixel_value=255.0),
        A.PadIfNeeded(min_height=None, min_width=None, pad_height_divisor=data.pad_divisor,
                      pad_width_divisor=data.pad_divisor, position="top_left", border_mode=cv2.BORDER_CONSTANT,
                      fill=0, fill_mask=data.ignore_index),
    ])
