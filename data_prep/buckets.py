"""Bucket sizes (W x H) that prepared images are padded to, so a batch of one bucket needs no padding.

Two kinds: `auto_buckets` fits a small set to the dataset's own crop sizes (the default for every format
but `course`), and DEFAULT_BUCKETS is the course's list: the im2markup buckets (240x100 ... 1600x1600)
with the half-size buckets the downsampled im2latex images use and small ones for short handwritten crops.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

Bucket = tuple[int, int]  # (width, height)
AUTO = "auto"  # the `buckets` option's value for buckets fitted to the data

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


def parse_buckets(text: str) -> tuple[Bucket, ...] | str:
    """'60x40,120x50' -> ((60, 40), (120, 50)); 'auto' -> AUTO (fitted to the data when it is prepared)."""
    if text.strip().lower() == AUTO:
        return AUTO
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


_LADDER_GROWTH = 1.1  # each bucket side is at most ~10% above the next smaller one
_LADDER_MULTIPLE = 4  # sides rounded up to a multiple of this (keeps the set small for tiny crops)


def _ladder(values: Sequence[int]) -> list[int]:
    """Sides from the smallest to the largest value, each ~10% above the last, rounded up to 4 px."""
    lo, hi = min(values), max(values)
    out, side = [], float(lo)
    while True:
        rounded = -(-int(math.ceil(side)) // _LADDER_MULTIPLE) * _LADDER_MULTIPLE
        if not out or rounded > out[-1]:
            out.append(rounded)
        if rounded >= hi:
            return out
        side = max(side * _LADDER_GROWTH, side + 1)


def auto_buckets(sizes: Sequence[Bucket], min_count: int | None = None) -> tuple[Bucket, ...]:
    """A small set of (W, H) buckets fitted to the crops' own sizes (W, H): every crop goes to the cell
    of a width ladder x height ladder that holds it, then buckets with fewer than `min_count` crops are
    merged into the cheapest larger bucket, so batches stay full while padding stays near the crop.

    The course's fixed list was made for wide printed formulas: a squarish handwritten crop or a small
    downsampled one pads to several times its pixels, and every convolution pays for the padding."""
    if not sizes:
        return ()
    if min_count is None:
        min_count = max(4, min(32, len(sizes) // 150))  # at least 4 crops a bucket, 32 on large sets
    widths, heights = _ladder([w for w, _ in sizes]), _ladder([h for _, h in sizes])
    counts: Counter[Bucket] = Counter(
        (next(x for x in widths if x >= w), next(y for y in heights if y >= h)) for w, h in sizes
    )
    # A bucket that holds too few of them joins the bucket whose union with
    # it (the larger width x the larger height) adds the fewest padded pixels over both groups.
    while len(counts) > 1:
        small = min(counts, key=lambda b: (counts[b], b[0] * b[1]))
        if counts[small] >= min_count:
            break
        n_small = counts.pop(small)
        other = min(counts, key=lambda b: _merge_cost(small, n_small, b, counts[b]))
        merged = (max(small[0], other[0]), max(small[1], other[1]))
        n_other = counts.pop(other)
        counts[merged] = counts.get(merged, 0) + n_small + n_other
    return tuple(sorted(counts, key=lambda b: (b[1], b[0])))


def _merge_cost(a: Bucket, n_a: int, b: Bucket, n_b: int) -> int:
    """Padded pixels added when buckets a and b (holding n_a and n_b crops) become their union."""
    union = max(a[0], b[0]) * max(a[1], b[1])
    return n_a * (union - a[0] * a[1]) + n_b * (union - b[0] * b[1])


def pad_ratio(sizes: Sequence[Bucket], buckets: Sequence[Bucket]) -> float:
    """Padded pixels / cropped pixels over all crops (W, H) that fit some bucket (1.0 = no padding)."""
    cropped = padded = 0
    for w, h in sizes:
        bucket = fit_bucket(w, h, buckets)
        if bucket is not None:
            cropped, padded = cropped + w * h, padded + bucket[0] * bucket[1]
    return padded / cropped if cropped else float("nan")
