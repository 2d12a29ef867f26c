"""Training-time augmentation of formula images, every knob a searchable number (probability 0 = off).

    python -c "import numpy as np; from data_prep.augment import AugmentConfig, build_augment; \
        print(build_augment(AugmentConfig())(np.full((40, 200), 255, np.uint8)).shape)"

`build_augment(cfg)` maps a uint8 (H, W) image to a uint8 (H, W) image of the same shape (the bucket is
kept) with albumentations 2; whatever a geometric transform uncovers is filled white (255), like the page.
`mixup_batch` mixes a collated batch with a shuffled copy of itself. Only training batches are augmented:
`data_prep.dataset.build_loader` applies a pipeline only when it is given one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from core.typed_config import ConfigError

WHITE = 255
# Pixels darker than this count as ink when aspect jitter finds the formula's box.
_INK_THRESHOLD = 250


@dataclass
class AugmentConfig:
    """Defaults are modest: mild noise, blur, aspect and affine jitter; distortions and mixup off.

    Ranges are symmetric around identity: `scale_x=0.15` draws a width factor in [0.85, 1.15];
    `rotate_deg=2` a rotation in [-2, 2] degrees.
    """

    enabled: bool = True
    noise_prob: float = 0.2
    noise_std: float = 0.05  # the largest noise std, as a fraction of 255
    blur_prob: float = 0.1
    blur_max_kernel: int = 3  # odd; Gaussian kernels from 3 up to this
    scale_prob: float = 0.3
    scale_x: float = 0.15
    scale_y: float = 0.1
    affine_prob: float = 0.3
    rotate_deg: float = 2.0
    shear_deg: float = 2.0
    elastic_prob: float = 0.0
    elastic_strength: float = 1.0  # about the rms displacement in pixels
    grid_prob: float = 0.0
    grid_strength: float = 0.1  # albumentations' distort_limit: fraction of a grid cell
    # The course found that mixup hurt formula recognition; it stays off by default but remains a knob
    # (mixup_prob > 0) so that a study can confirm or refute that on its own data.
    mixup_prob: float = 0.0
    mixup_alpha: float = 0.2  # Beta(alpha, alpha) for the mixing weight

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob") and not 0.0 <= value <= 1.0:
                raise ConfigError(f"augment.{f.name}={value!r}: a probability must lie in [0, 1]")
        for name in ("noise_std", "grid_strength"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"augment.{name}={getattr(self, name)!r}: must lie in [0, 1]")
        for name in ("scale_x", "scale_y"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"augment.{name}={getattr(self, name)!r}: must lie in [0, 1)")
        for name in ("rotate_deg", "shear_deg", "elastic_strength"):
            if getattr(self, name) < 0:
                raise ConfigError(f"augment.{name}={getattr(self, name)!r}: must be >= 0")
        if self.blur_max_kernel < 3 or self.blur_max_kernel % 2 == 0:
            raise ConfigError(f"augment.blur_max_kernel={self.blur_max_kernel!r}: use an odd integer >= 3")
        if self.mixup_alpha <= 0:
            raise ConfigError(f"augment.mixup_alpha={self.mixup_alpha!r}: must be > 0")


class AspectScale(A.ImageOnlyTransform):
    """Rescale the ink's box by independent x/y factors, re-centred on a white canvas of the same shape.

    Unlike `A.Affine(scale=...)` the formula is never cut off: a factor that would overflow the canvas is
    reduced until the content fits.
    """

    def __init__(self, scale_x: float = 0.1, scale_y: float = 0.1, p: float = 0.5):
        super().__init__(p=p)
        self.scale_x = scale_x
        self.scale_y = scale_y

    def get_params(self) -> dict[str, float]:
        return {
            "fx": self.py_random.uniform(1 - self.scale_x, 1 + self.scale_x),
            "fy": self.py_random.uniform(1 - self.scale_y, 1 + self.scale_y),
        }

    def apply(self, img: np.ndarray, fx: float = 1.0, fy: float = 1.0, **params: Any) -> np.ndarray:
        gray = img[..., 0] if img.ndim == 3 else img  # albumentations may hand grayscale as (H, W, 1)
        out = _rescale_ink(gray, fx, fy)
        return out[..., None] if img.ndim == 3 else out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale_x", "scale_y")


def _rescale_ink(gray: np.ndarray, fx: float, fy: float) -> np.ndarray:
    rows, cols = np.nonzero(gray < _INK_THRESHOLD)
    if rows.size == 0:
        return gray
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    h, w = gray.shape
    new_h = max(1, min(h, round((bottom - top) * fy)))
    new_w = max(1, min(w, round((right - left) * fx)))
    interp = cv2.INTER_AREA if new_h * new_w < (bottom - top) * (right - left) else cv2.INTER_LINEAR
    content = cv2.resize(gray[top:bottom, left:right], (new_w, new_h), interpolation=interp)
    # Keep the box's centre where it was, shifted only as far as needed to stay on the canvas.
    y0 = int(np.clip(round((top + bottom - new_h) / 2), 0, h - new_h))
    x0 = int(np.clip(round((left + right - new_w) / 2), 0, w - new_w))
    out = np.full_like(gray, WHITE)
    out[y0 : y0 + new_h, x0 : x0 + new_w] = content
    return out


def _transforms(cfg: AugmentConfig) -> list[A.BasicTransform]:
    # Geometry first, on the clean image; then blur and noise, as a scanner or camera would add them.
    white = {"border_mode": cv2.BORDER_CONSTANT, "fill": WHITE}
    chosen = [
        AspectScale(cfg.scale_x, cfg.scale_y, p=cfg.scale_prob),
        A.Affine(rotate=(-cfg.rotate_deg, cfg.rotate_deg), shear=(-cfg.shear_deg, cfg.shear_deg),
                 p=cfg.affine_prob, **white),
        # albumentations scales a max-normalised noise field smoothed by sigma (rms ~0.02 at sigma 4, which
        # keeps strokes connected) by alpha: alpha = 50 * strength gives ~strength pixels rms.
        A.ElasticTransform(alpha=cfg.elastic_strength * 50.0, sigma=4.0, p=cfg.elastic_prob, **white),
        A.GridDistortion(distort_limit=(-cfg.grid_strength, cfg.grid_strength), p=cfg.grid_prob, **white),
        A.GaussianBlur(blur_limit=(3, cfg.blur_max_kernel), p=cfg.blur_prob),
        A.GaussNoise(std_range=(0.0, cfg.noise_std), p=cfg.noise_prob),
    ]
    return [t for t in chosen if t.p > 0]


class Augmenter:
    """callable(np.uint8 (H, W)) -> np.uint8 (H, W); picklable, so DataLoader workers can receive it."""

    def __init__(self, cfg: AugmentConfig, seed: int | None = None):
        self.cfg = cfg
        self.transforms = _transforms(cfg) if cfg.enabled else []
        self.pipeline = A.Compose(self.transforms, seed=seed) if self.transforms else None
        self._pid = os.getpid()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.pipeline is None:
            return image
        if os.getpid() != self._pid:
            self._reseed_in_worker()
        out = self.pipeline(image=image)["image"]
        return out.reshape(image.shape).astype(np.uint8, copy=False)

    def set_random_seed(self, seed: int) -> None:
        """Reseed this process's pipeline (e.g. per epoch, so a resumed run repeats its augmentations)."""
        self._pid = os.getpid()
        if self.pipeline is not None:
            self.pipeline.set_random_seed(seed % 2**32)

    def _reseed_in_worker(self) -> None:
        # Forked DataLoader workers inherit one random state: without this they all draw the same
        # augmentations. torch gives each worker its own seed, derived from the loader's base seed.
        info = torch.utils.data.get_worker_info()
        self.set_random_seed(info.seed if info is not None else int.from_bytes(os.urandom(4), "little"))


def build_augment(cfg: AugmentConfig, seed: int | None = None) -> Augmenter:
    """The pipeline for `cfg`; the identity when `cfg.enabled` is false or every probability is 0."""
    return Augmenter(cfg, seed=seed)


@dataclass
class MixedBatch:
    """Images mixed as `lam * a + (1 - lam) * b`; loss `lam * L(targets_a) + (1 - lam) * L(targets_b)`."""

    images: torch.Tensor  # (B, 1, H, W)
    targets_a: torch.Tensor  # (B, T)
    targets_b: torch.Tensor  # (B, T)
    lam: float


def mixup_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    cfg: AugmentConfig,
    generator: torch.Generator | None = None,
) -> MixedBatch | None:
    """Mixup within one batch (one bucket, so shapes agree), or None when not applied to this batch.

    Off by default: the course found mixup hurt; `mixup_prob` lets a study learn whether it does here.
    `lam` is drawn from Beta(alpha, alpha) and folded to >= 0.5 so `targets_a` stays the main target.
    """
    batch = images.shape[0]
    if not cfg.enabled or cfg.mixup_prob <= 0 or batch < 2:
        return None
    if torch.rand((), generator=generator).item() >= cfg.mixup_prob:
        return None
    # torch's Beta sampler takes no generator; a numpy one seeded from it keeps the draw reproducible.
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (), generator=generator)))
    lam = float(rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
    lam = min(max(lam, 1.0 - lam), 1.0 - 1e-3)
    # A random cyclic shift of a random order: every image is mixed with a different one.
    order = torch.randperm(batch, generator=generator)
    partner = torch.empty_like(order)
    partner[order] = order.roll(-1)
    partner = partner.to(images.device)
    mixed = lam * images + (1.0 - lam) * images[partner]  # (B, 1, H, W)
    return MixedBatch(images=mixed, targets_a=targets, targets_b=targets[partner], lam=lam)
