"""Tiny prepared dataset folders for the loading tests (Dataset, sampler, cache, benchmark).

Built by hand in the prepared format (docs/DATASETS.md) so the loading half can be tested on its own; the
real-image variant converts part of ../shared/data/im2latex-sample the way the importer would (grayscale
PNGs).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from data_prep.vocab import Vocab

# (H, W) buckets of the synthetic folder and how many images each split gets per bucket.
TINY_SIZES = ((32, 96), (40, 160), (48, 64))
TINY_COUNTS = {"train": 7, "validate": 3, "test": 2}
TINY_TOKENS = ("x", "y", "+", "=", "\\frac", "{", "}", "2", "^", "\\alpha")


def ink_image(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """White (H, W) uint8 with a few dark strokes well inside the border."""
    img = np.full((h, w), 255, dtype=np.uint8)
    for _ in range(4):
        y, x = int(rng.integers(h // 4, 3 * h // 4)), int(rng.integers(w // 4, 3 * w // 4))
        img[max(0, y - 2) : y + 2, max(0, x - 6) : x + 6] = rng.integers(0, 80)
    return img


def write_manifest(root: Path, content_hash: str) -> None:
    (root / "manifest.json").write_text(json.dumps({"source": "test fixture", "content_hash": content_hash}))


def make_tiny_prepared(root: Path, seed: int = 0, with_manifest: bool = True) -> Path:
    """A prepared folder: 3 image sizes; train/validate with formulas, test without; vocab.json."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    formulas: list[str] = []
    for split, per_size in TINY_COUNTS.items():
        lines = []
        for k in range(per_size):
            for h, w in TINY_SIZES:
                name = f"{split}_{h}x{w}_{k}.png"
                Image.fromarray(ink_image(h, w, rng)).save(root / "images" / name)
                length = int(rng.integers(1, 9))
                formulas.append(" ".join(rng.choice(TINY_TOKENS, size=length)))
                lines.append(name if split == "test" else f"{name} {len(formulas) - 1}")
        (root / f"{split}.lst").write_text("\n".join(lines) + "\n")
    (root / "formulas.norm.lst").write_text("\n".join(formulas) + "\n")
    Vocab.build(f.split() for f in formulas).save(root / "vocab.json")
    if with_manifest:
        write_manifest(root, hashlib.sha256(f"tiny-{seed}".encode()).hexdigest())
    return root


def make_im2latex_prepared(sample: Path, root: Path, per_split: dict[str, int]) -> Path:
    """The first N images of each im2latex-sample split, as grayscale PNGs in the prepared layout."""
    (root / "images").mkdir(parents=True)
    formulas = (sample / "formulas.norm.lst").read_text(encoding="utf-8").split("\n")
    (root / "formulas.norm.lst").write_text("\n".join(formulas), encoding="utf-8")
    train_formulas = []
    for split, n in per_split.items():
        lines = (sample / f"{split}_filter.lst").read_text().split("\n")
        kept = [line for line in lines if line.strip()][:n]
        for line in kept:
            name, idx = line.split()
            with Image.open(sample / "images_processed" / name) as img:
                img.convert("L").save(root / "images" / name)
            if split == "train":
                train_formulas.append(formulas[int(idx)].split())
        (root / f"{split}.lst").write_text("\n".join(kept) + "\n")
    Vocab.build(train_formulas).save(root / "vocab.json")
    write_manifest(root, hashlib.sha256(repr(sorted(per_split.items())).encode()).hexdigest())
    return root
