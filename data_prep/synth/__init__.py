"""The embedded default dataset: school-maths formulas rendered locally.

    python -m data_prep synth --out data/synth --n 20000 --seed 0 [--style printed|handwritten]

Every item draws from its own seed (dataset seed, index), so a parallel build equals a serial one.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np

from data_prep.items import RawItem
from data_prep.synth.grammar import generate_formula
from data_prep.synth.render import FONT_SIZES, FONTSETS, STYLES, SynthImage, warm_up
from data_prep.tokenizer import tokenize

log = logging.getLogger(__name__)
# Synth formulas are single-line by construction; their length is bounded by the grammar's depth.
DEFAULTS = {"max_tokens": None, "margin": 4}


def item_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def synth_items(n: int, seed: int = 0, style: str = "printed") -> list[RawItem]:
    if style not in STYLES:
        raise ValueError(f"unknown synth style {style!r}; valid styles: {', '.join(STYLES)}")
    if n <= 0:
        raise ValueError(f"--n must be positive, got {n}")
    items = []
    for index in range(n):
        s = item_seed(seed, index)
        rng = random.Random(s)
        latex = generate_formula(rng)
        # mathtext drops `^ { 2 }` written with spaces, so the image renders the untokenised source
        # while the label is its tokenisation (the same formula, token for token).
        label = " ".join(tokenize(latex))
        image = SynthImage(latex, rng.choice(FONTSETS), rng.choice(FONT_SIZES), style, s)
        items.append(RawItem(f"{index:06d}", None, image, label, pretokenized=True, origin=f"synth:{index}"))
    return items


def synth_dataset(out: Path | str, n: int, seed: int = 0, style: str = "printed", **options) -> Path:
    """Render `n` formulas into the prepared folder `out`; `options` as for import_dataset."""
    from data_prep.importers import build_options
    from data_prep.pipeline import prepare_dataset

    merged = {"split_seed": seed, **DEFAULTS, **options}
    warm_up(style)  # import matplotlib (and albumentations) once, before the pool forks
    log.info("rendering %d synthetic %s formulas (seed %d) into %s", n, style, seed, out)
    return prepare_dataset(
        synth_items(n, seed, style), Path(out), source="synth", fmt="synth",
        options=build_options(**merged), source_options={"n": n, "seed": seed, "style": style},
    )  # fmt: skip
