"""python -m benchmarks bench_buckets: padded pixels / cropped pixels, the course's bucket list vs `auto`.

Every convolution pays for padding, so this ratio is the share of encoder compute spent on white. Two
sets: the im2latex sample (wide printed formulas, the list's home ground; ../shared/data) and a
handwritten-style set rendered by synth (`--style handwritten`, short exam formulas: squarer crops).
Crop sizes come from the same pipeline with padding off; `auto` is `data_prep.buckets.auto_buckets`,
exactly what `--buckets auto` pads to.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from PIL import Image

from core.paths import shared_data_dir
from data_prep.buckets import DEFAULT_BUCKETS, auto_buckets, pad_ratio
from data_prep.ensure import import_dataset, synth_dataset

N_HANDWRITTEN = 1500
HANDWRITTEN_MAX_TOKENS = 12  # exam-style short formulas: the squarish crops the course list pads most


def _crop_sizes(root: Path) -> list[tuple[int, int]]:
    sizes = []
    for path in sorted((root / "images").glob("*.png")):
        with Image.open(path) as im:
            sizes.append(im.size)  # (W, H)
    return sizes


def _figures(name: str, sizes: list[tuple[int, int]]) -> dict[str, float]:
    buckets = auto_buckets(sizes)
    return {
        f"pad_ratio_course_{name}": round(pad_ratio(sizes, DEFAULT_BUCKETS), 3),
        f"pad_ratio_auto_{name}": round(pad_ratio(sizes, buckets), 3),
        f"auto_buckets_{name}": len(buckets),
    }


def run() -> dict:
    logging.getLogger("data_prep").setLevel(logging.WARNING)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sample = shared_data_dir() / "im2latex-sample"
        if sample.is_dir():
            out = import_dataset("im2latex", sample, Path(tmp) / "im2latex", pad=False)
            figures.update(_figures("im2latex", _crop_sizes(out)))
        out = synth_dataset(Path(tmp) / "handwritten", N_HANDWRITTEN, seed=0, style="handwritten", pad=False,
                            max_tokens=HANDWRITTEN_MAX_TOKENS)  # fmt: skip
        figures.update(_figures("handwritten", _crop_sizes(out)))
    return figures
