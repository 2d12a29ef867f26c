"""python -m pytest tests/data_prep/test_augment.py -q"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core.typed_config import ConfigError, from_dict, to_dict
from data_prep.augment import AugmentConfig, build_augment, mixup_batch

ALL_OFF = {f.name: 0.0 for f in dataclasses.fields(AugmentConfig) if f.name.endswith("_prob")}
# One knob at a time, at probability 1 and a strength big enough to move pixels on a 60x200 image.
KNOBS = {
    "noise": {"noise_prob": 1.0, "noise_std": 0.2},
    "blur": {"blur_prob": 1.0, "blur_max_kernel": 5},
    "scale": {"scale_prob": 1.0, "scale_x": 0.4, "scale_y": 0.4},
    "affine": {"affine_prob": 1.0, "rotate_deg": 10.0, "shear_deg": 10.0},
    "elastic": {"elastic_prob": 1.0, "elastic_strength": 2.0},
    "grid": {"grid_prob": 1.0, "grid_strength": 0.4},
}
GEOMETRIC = ("scale", "affine", "elastic", "grid")


def formula_like(h: int = 60, w: int = 200) -> np.ndarray:
    """White canvas, ink only in the middle third: a black fill would show up in the margins."""
    img = np.full((h, w), 255, dtype=np.uint8)
    img[h // 3 : 2 * h // 3 : 3, w // 3 : 2 * w // 3] = 0
    img[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3 : 7] = 30
    return img


def config(**overrides) -> AugmentConfig:
    return AugmentConfig(**{**ALL_OFF, **overrides})


@pytest.mark.parametrize("knob", list(KNOBS))
def test_each_knob_keeps_shape_and_dtype_and_changes_pixels(knob):
    image = formula_like()
    augment = build_augment(config(**KNOBS[knob]), seed=1)
    outs = [augment(image.copy()) for _ in range(3)]
    for out in outs:
        assert out.shape == image.shape and out.dtype == np.uint8
    assert any(not np.array_equal(out, image) for out in outs), f"{knob} at probability 1 changed nothing"


@pytest.mark.parametrize("knob", GEOMETRIC)
def test_geometric_fill_is_white(knob):
    image = formula_like()
    augment = build_augment(config(**KNOBS[knob]), seed=2)
    for _ in range(3):
        out = augment(image.copy())
        margins = np.concatenate([out[:3].ravel(), out[-3:].ravel(), out[:, :5].ravel(), out[:, -5:].ravel()])
        assert margins.min() == 255, f"{knob} filled the border with {margins.min()}"


def test_aspect_scale_rescales_the_ink_box_and_keeps_it_on_the_canvas():
    image = formula_like()
    augment = build_augment(config(scale_prob=1.0, scale_x=0.5, scale_y=0.05), seed=3)
    widths = []
    for _ in range(10):
        out = augment(image.copy())
        cols = np.nonzero((out < 250).any(axis=0))[0]
        widths.append(cols.max() - cols.min() + 1)
        assert out.min() < 60, "the formula must survive"
    original = 2 * 200 // 3 - 200 // 3
    assert min(widths) < original < max(widths)
    assert min(widths) >= original * 0.5 - 2 and max(widths) <= original * 1.5 + 2


def test_disabled_or_all_zero_probabilities_are_the_identity():
    image = formula_like()
    everything_on = {k: v for knob in KNOBS.values() for k, v in knob.items()}
    for cfg in (AugmentConfig(**{**everything_on, "enabled": False}), config()):
        augment = build_augment(cfg)
        np.testing.assert_array_equal(augment(image.copy()), image)


def test_same_seed_gives_the_same_augmentations():
    image = formula_like()
    cfg = AugmentConfig(noise_prob=0.5, affine_prob=0.5, scale_prob=0.5)
    a, b = build_augment(cfg, seed=11), build_augment(cfg, seed=11)
    for _ in range(4):
        np.testing.assert_array_equal(a(image.copy()), b(image.copy()))
    a.set_random_seed(5)
    first = [a(image.copy()) for _ in range(4)]
    a.set_random_seed(5)
    for expected in first:
        np.testing.assert_array_equal(a(image.copy()), expected)


def test_config_round_trips_through_typed_config_and_rejects_bad_values():
    cfg = from_dict(AugmentConfig, {"noise_prob": 0.5, "blur_max_kernel": 7, "mixup_prob": 0})
    assert from_dict(AugmentConfig, to_dict(cfg)) == cfg
    for bad in ({"noise_prob": 1.5}, {"blur_max_kernel": 4}, {"scale_x": 1.0}, {"mixup_alpha": 0.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            AugmentConfig(**bad)


def test_mixup_mixes_within_the_batch():
    images = torch.rand(6, 1, 8, 24)  # (B, 1, H, W)
    targets = torch.arange(6).unsqueeze(1).repeat(1, 5)  # (B, T): row i is all i
    cfg = AugmentConfig(mixup_prob=1.0, mixup_alpha=0.4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        mixed = mixup_batch(images, targets, cfg, gen)
        assert mixed is not None
        assert 0.0 < mixed.lam < 1.0
        assert mixed.images.shape == images.shape
        assert torch.equal(mixed.targets_a, targets)
        partner = mixed.targets_b[:, 0]
        assert sorted(partner.tolist()) == list(range(6))
        assert (partner != torch.arange(6)).all(), "an image must not be mixed with itself"
        expected = mixed.lam * images + (1 - mixed.lam) * images[partner]
        torch.testing.assert_close(mixed.images, expected)


def test_mixup_off_by_default_and_reproducible():
    images, targets = torch.rand(4, 1, 8, 8), torch.zeros(4, 3, dtype=torch.long)
    assert mixup_batch(images, targets, AugmentConfig()) is None
    assert mixup_batch(images, targets, AugmentConfig(mixup_prob=1.0, enabled=False)) is None
    cfg = AugmentConfig(mixup_prob=0.5)
    for seed in range(5):
        a, b = (mixup_batch(images, targets, cfg, torch.Generator().manual_seed(seed)) for _ in range(2))
        assert (a is None) == (b is None)
        if a is not None:
            assert a.lam == b.lam and torch.equal(a.images, b.images)
    applied = sum(mixup_batch(images, targets, cfg, torch.Generator().manual_seed(s)) is not None
                  for s in range(200))
    assert 60 < applied < 140  # about half the batches at probability 0.5


class _Constant(torch.utils.data.Dataset):
    def __init__(self, augment):
        self.augment = augment

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return torch.from_numpy(self.augment(formula_like()))


def test_dataloader_workers_draw_different_augmentations():
    # Item 0 goes to worker 0, item 1 to worker 1, each as its worker's first draw: a random state shared
    # through fork would make them identical.
    augment = build_augment(config(noise_prob=1.0, noise_std=0.3), seed=0)
    loader = torch.utils.data.DataLoader(_Constant(augment), batch_size=1, num_workers=2)
    first, second = list(loader)
    assert not torch.equal(first, second)
