"""Small configs of every registered family and a batch of 8 real formulas."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.typed_config import from_dict
from data_prep.vocab import EOS_ID, PAD_ID, SOS_ID, Vocab
from models import ModelConfig

# per family: a model small enough for CPU tests; a family without an entry is tested at its defaults
SMALL = {
    "transformer": {"cut_after": 2, "d_model": 64, "nhead": 2, "num_layers": 2, "dim_feedforward": 128},
    "rnn": {
        "cnn_channels": [16, 32, 64, 64],
        "cnn_pools": ["2x2", "2x2", "2x1", "1x1"],
        "encoder_hidden": 64,
        "embed_dim": 32,
        "decoder_hidden": 128,
    },
}


def _small_config(kind: str, **overrides) -> ModelConfig:
    return from_dict(ModelConfig, {"kind": kind, **SMALL.get(kind, {}), **overrides})


@pytest.fixture
def small_config():
    """small_config(kind, **overrides) -> a CPU-sized config of that family."""
    return _small_config


@dataclass
class RealBatch:
    images: torch.Tensor  # (8, 1, H, W) in [0, 1], white background
    targets: torch.Tensor  # (8, T) [SOS, ..., EOS, PAD...]
    formulas: list[list[str]]
    vocab: Vocab


def load_real_batch(root: Path, n: int = 8, min_tokens: int = 4) -> RealBatch:
    lines = (root / "formulas.norm.lst").read_text(encoding="utf-8").split("\n")
    pairs = [line.split() for line in (root / "train_filter.lst").read_text().splitlines()]
    # the shortest formulas keep the overfit fast; very short ones (a lone symbol) test little
    ranked = sorted((len(lines[int(i)].split()), name, lines[int(i)].split()) for name, i in pairs)
    chosen = [r for r in ranked if r[0] >= min_tokens][:n]
    arrays = [
        np.asarray(Image.open(root / "images_processed" / name).convert("L"), dtype=np.float32) / 255.0
        for _, name, _ in chosen
    ]
    h, w = max(a.shape[0] for a in arrays), max(a.shape[1] for a in arrays)
    images = torch.ones(len(arrays), 1, h, w)  # pad with white background
    for j, a in enumerate(arrays):
        images[j, 0, : a.shape[0], : a.shape[1]] = torch.from_numpy(a)
    formulas = [f for _, _, f in chosen]
    vocab = Vocab.build(formulas)
    targets = torch.full((len(formulas), max(map(len, formulas)) + 2), PAD_ID, dtype=torch.long)
    for j, f in enumerate(formulas):
        ids = [SOS_ID, *vocab.encode(f), EOS_ID]
        targets[j, : len(ids)] = torch.tensor(ids)
    return RealBatch(images, targets, formulas, vocab)


@pytest.fixture(scope="session")
def real_batch(im2latex_sample) -> RealBatch:
    return load_real_batch(im2latex_sample)


@pytest.fixture(autouse=True)
def _one_thread():
    # These models are tiny: on a shared 2-core machine extra intra-op threads mostly spin-wait
    # (10x slower under load), and one thread keeps the results reproducible.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
