"""synth: a real school-maths grammar, mathtext-renderable, deterministic for a seed, parallel = serial."""

import json
import random

import numpy as np
import pytest
from PIL import Image

from data_prep.manifest import content_hash
from data_prep.synth import synth_dataset, synth_items
from data_prep.synth.grammar import generate_formula
from data_prep.synth.render import FONTSETS, handwrite, render_mathtext
from data_prep.tokenizer import tokenize

REQUIRED = r"""\frac \sqrt ^ _ \alpha \pi \sin \log \sum \int \lim \in \cup \cap \leq \neq \vec \triangle
\angle \perp \parallel \circ \left| \left( \right) \mathbb \infty""".split()


def test_grammar_covers_school_maths():
    tokens = {t for i in range(600) for t in tokenize(generate_formula(random.Random(i)))}
    assert not [t for t in REQUIRED if t not in tokens]


def test_every_formula_renders_in_every_fontset():
    for i in range(150):
        latex = generate_formula(random.Random(1000 + i))
        gray = render_mathtext(latex, FONTSETS[i % len(FONTSETS)], 18)
        assert gray.dtype == np.uint8 and gray.ndim == 2 and gray.min() < 100  # some ink drawn


def test_items_are_deterministic_per_index():
    a, b = synth_items(30, seed=5), synth_items(10, seed=5)
    assert [(x.formula, x.image) for x in a[:10]] == [(x.formula, x.image) for x in b]
    assert [x.formula for x in synth_items(10, seed=6)] != [x.formula for x in b]
    assert all(x.formula == " ".join(tokenize(x.image.latex)) for x in a)  # label = tokenised formula


def test_parallel_build_equals_serial_build(tmp_path):
    serial = synth_dataset(tmp_path / "serial", n=40, seed=3, workers=0)
    parallel = synth_dataset(tmp_path / "parallel", n=40, seed=3, workers=2)
    other = synth_dataset(tmp_path / "other", n=40, seed=4, workers=0)
    hashes = [
        json.loads((p / "manifest.json").read_text())["content_hash"] for p in (serial, parallel, other)
    ]
    assert hashes[0] == hashes[1] == content_hash(parallel) and hashes[2] != hashes[0]
    manifest = json.loads((serial / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 32, "validate": 4, "test": 4} and manifest["dropped"] == []
    for line in (serial / "formulas.norm.lst").read_text().splitlines():
        assert line == " ".join(tokenize(line))


def test_handwritten_style_distorts_deterministically(tmp_path):
    printed = render_mathtext(r"\frac{x^{2}}{y} + \sqrt{z}", "cm", 24)
    a, b, c = handwrite(printed, 1), handwrite(printed, 1), handwrite(printed, 2)
    assert (a == b).all()
    assert (a != np.pad(printed, 12, constant_values=255)).mean() > 0.01
    assert a.shape == c.shape and not (a == c).all()
    out = synth_dataset(tmp_path / "hw", n=12, seed=0, style="handwritten", workers=0)
    ref = synth_dataset(tmp_path / "pr", n=12, seed=0, style="printed", workers=0)
    name = (out / "train.lst").read_text().split()[0]
    hw_img, pr_img = (np.asarray(Image.open(p / "images" / name)) for p in (out, ref))
    assert (out / "formulas.norm.lst").read_text() == (ref / "formulas.norm.lst").read_text()
    assert hw_img.shape != pr_img.shape or (hw_img != pr_img).mean() > 0.01


def test_bad_style_and_n_raise():
    with pytest.raises(ValueError, match="styles"):
        synth_items(3, style="cursive")
    with pytest.raises(ValueError, match="positive"):
        synth_items(0)
