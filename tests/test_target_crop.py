"""The target-centred crop: geometry, YAML round trip in the trial pipeline, rare-class share, positions."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from automl.data.target_crop import TargetCrop
from automl.diagnostics.heatmap import position_density
from automl.trial.augment import train_transform
from automl.trial_config import AugmentSpec

IGNORE = 255


def _apply(t, mask, image=None, n=1, seed=0):
    image = np.full((*mask.shape, 3), 100, np.uint8) if image is None else image
    t.set_random_seed(seed)
    return [t(image=image, mask=mask) for _ in range(n)]


def test_crop_is_centred_on_the_chosen_class_and_padded_with_ignore():
    mask = np.zeros((40, 50), np.uint8)
    mask[2, 47] = 3  # one pixel of class 3 near the top-right corner
    t = A.Compose([TargetCrop(height=16, width=16, ignore_index=IGNORE, class_weights=[0, 0, 0, 1], jitter=0.0)])
    for out in _apply(t, mask, n=5):
        assert out["mask"].shape == (16, 16) and out["image"].shape == (16, 16, 3)
        assert out["mask"][8, 8] == 3  # the chosen pixel is the exact centre without jitter
        assert (out["mask"][:6] == IGNORE).all()       # rows above the image are padding
        assert (out["image"][:6] == 0).all()           # image padding uses fill
        assert (out["mask"][:, 11:] == IGNORE).all()   # columns past the right border too


def test_keep_inside_and_fallbacks():
    mask = np.zeros((40, 50), np.uint8)
    mask[2, 47] = 3
    inside = A.Compose([TargetCrop(height=16, width=16, ignore_index=IGNORE, class_weights=[0, 0, 0, 1],
                                   keep_inside=True)])
    for out in _apply(inside, mask, n=5):
        assert (out["mask"] != IGNORE).all() and (out["mask"] == 3).sum() == 1
    # a mask with no class pixel gets a uniform window; an image smaller than the crop is padded
    void = np.full((10, 12), IGNORE, np.uint8)
    out = _apply(A.Compose([TargetCrop(height=16, width=16, ignore_index=IGNORE)]), void)[0]
    assert out["mask"].shape == (16, 16) and (out["mask"] == IGNORE).all()
    with pytest.raises(ValueError):
        TargetCrop(height=16, width=16, jitter=2.0)


def test_train_transform_round_trips_through_albumentations_yaml(tmp_path):
    aug = AugmentSpec(crop_height=32, crop_width=32, scale_min=0.8, scale_max=1.2, target_crop=0.6,
                      color_jitter=0.1)
    t = train_transform(aug, IGNORE)
    path = tmp_path / "train.yaml"
    A.save(t, str(path), data_format="yaml")
    text = path.read_text()
    assert "automl.data.target_crop.TargetCrop" in text and "CropNonEmptyMaskIfExists" not in text
    loaded = A.load(str(path), data_format="yaml")
    assert A.to_dict(loaded) == A.to_dict(t)
    # the loaded pipeline draws the same crops as the original from the same seed
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, (48, 64)).astype(np.uint8)
    image = rng.integers(0, 255, (48, 64, 3)).astype(np.uint8)
    a, b = _apply(t, mask, image, n=3, seed=7), _apply(loaded, mask, image, n=3, seed=7)
    for x, y in zip(a, b):
        assert np.array_equal(x["mask"], y["mask"]) and np.array_equal(x["image"], y["image"])
    # non-default arguments survive too
    custom = TargetCrop(height=8, width=9, ignore_index=11, rarity=0.25, class_weights=[1.0, 3.0], jitter=0.1,
                        keep_inside=True, fill=5, p=0.4)
    back = A.from_dict(A.to_dict(custom))
    assert isinstance(back, TargetCrop)
    assert A.to_dict(back) == A.to_dict(custom) and back.class_weights == [1.0, 3.0] and back.keep_inside


def _scenes(n=24, size=96, seed=0):
    """Road-like class 1 in the bottom quarter, a 4x4 rare class 2 in the top half, class 0 elsewhere."""
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(n):
        m = np.zeros((size, size), np.uint8)
        m[size * 3 // 4:] = 1
        y, x = rng.integers(0, size // 2), rng.integers(0, size - 4)
        m[y:y + 4, x:x + 4] = 2
        masks.append(m)
    return masks


def _crops(target_crop, masks, passes=8):
    t = train_transform(AugmentSpec(crop_height=32, crop_width=32, hflip=0.0, target_crop=target_crop), IGNORE)
    t.set_random_seed(3)
    img = np.zeros((96, 96, 3), np.uint8)
    return [t(image=img, mask=m)["mask"] for _ in range(passes) for m in masks]


def _share(masks, cls):
    counts = sum(np.bincount(m.ravel(), minlength=256) for m in masks)
    return counts[cls] / counts[:3].sum()


def test_target_crop_raises_the_rare_class_share_of_crops():
    masks = _scenes()
    image_share = _share(masks, 2)                       # 16 / 9216 ≈ 0.2 %
    random_share = _share(_crops(0.0, masks), 2)
    target_share = _share(_crops(1.0, masks), 2)
    assert target_share > 3 * random_share and target_share > 3 * image_share
    half = _share(_crops(0.5, masks), 2)
    assert random_share < half < target_share


def test_target_crop_moves_objects_off_their_usual_place():
    """Class 1 always fills the bottom quarter: random crops rarely show it in their top half."""
    masks = _scenes()

    def top_half_share(crops):
        d = position_density(crops, 3, IGNORE, grid=8)[1]
        return d[:4].sum() / d.sum()

    assert top_half_share(masks) == 0.0
    random_crops, target_crops = top_half_share(_crops(0.0, masks)), top_half_share(_crops(1.0, masks))
    assert random_crops < 0.15                       # only crops cut at the very bottom show it high
    assert target_crops > 0.25 and target_crops > 2 * random_crops
