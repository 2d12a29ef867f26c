"""Bucket sizes (W x H) that prepared images are padded to, so a batch of one bucket needs no padding.

The list is the course's: the im2markup buckets (240x100 ... 1600x1600) with the half-size buckets the
downsampled im2latex images use and small ones for short handwritten crops.
"""

from __future__ import annotations

from collections.abc import Sequence

Bucket = tuple[int, int]  # (width, height)

DEFAULT_BUCKETS: tuple[Bucket, ...] = (
    (60, 40), (120, 40), (120, 50), (160, 40), (160, 50), (200, 40), (200, 50), (240, 40), (240, 50),
    (240, 100), (280, 40), (280, 50), (320, 40), (320, 50), (320, 80), (360, 40), (360, 50), (360, 60),
    (360, 100), (400, 50), (400, 80), (400, 100), (400, 160), (480, 80), (480, 100), (500, 100),
    (500, 200), (560, 80), (560, 100), (600, 100), (640, 80), (640, 100), (720, 80), (720, 100),
    (720, 120), (720, 200), (800, 100), (800, 320), (800, 800), (1000, 200), (1000, 400), (1200, 200),
    (1600, 200), (1600, 1600),
)  # fmt: skip


def fit_bucket(width: int, height: int, buckets: Sequence[Bucket] = DEFAULT_BUCKETS) -> Bucket | None:
    """The smallest bucket (by area, then width) holding a width x height image; None when none does."""
    fitting = [(w, h) for w, h in buckets if w >= width and h >= height]
    return min(fitting, key=lambda b: (b[0] * b[1], b[0])) if fitting else None


def parse_buckets(text: str) -> tuple[Bucket, ...]:
    """'60x40,120x50' -> ((60, 40), (120, 50))."""
    out = []
    for part in text.replace(" ", "").split(","):
        try:
            w, h = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise ValueError(
                f"bad bucket {part!r} in {text!r}: write buckets as WxH,WxH (e.g. 60x40,120x50)"
            ) from None
        if w <= 0 or h <= 0:
            raise ValueError(f"bad bucket {part!r}: width and height must be positive")
        out.append((w, h))
    return tuple(out)
