"""`--buckets auto`: a small bucket set fitted to the crops, padding close to the ink crop."""

from __future__ import annotations

import json
import random

import numpy as np
from PIL import Image

from data_prep.buckets import AUTO, DEFAULT_BUCKETS, auto_buckets, fit_bucket, pad_ratio, parse_buckets
from data_prep.importers import import_dataset
from tests.data_prep._ingest_fixtures import formula_image, save


def _squarish_crops(n: int = 3000) -> list[tuple[int, int]]:
    """Handwritten exam crops: roughly square, 80-300 px a side (the course list pads them ~2-4x)."""
    rng = random.Random(0)
    return [(rng.randint(80, 300), rng.randint(70, 260)) for _ in range(n)]


def test_auto_buckets_pad_squarish_crops_far_less_than_the_course_list():
    sizes = _squarish_crops()
    buckets = auto_buckets(sizes)
    assert all(fit_bucket(w, h, buckets) is not None for w, h in sizes)
    assert pad_ratio(sizes, buckets) <= 1.3 < pad_ratio(sizes, DEFAULT_BUCKETS)
    counts: dict = {}
    for w, h in sizes:
        counts[fit_bucket(w, h, buckets)] = counts.get(fit_bucket(w, h, buckets), 0) + 1
    assert min(counts.values()) >= 8  # batches stay full: no bucket of a few stragglers


def test_auto_buckets_edge_cases():
    assert auto_buckets([]) == ()
    assert auto_buckets([(50, 20)]) == ((52, 20),)  # sides rounded up to a multiple of 4
    assert pad_ratio([(50, 20)], ((52, 20),)) == 52 / 50
    assert parse_buckets(" AUTO ") == AUTO


def test_import_pads_each_crop_to_its_fitted_bucket(tmp_path):
    src = tmp_path / "src"
    for i in range(40):
        save(formula_image("x" + "+y" * (i % 5), size=16 + i % 3 * 6), src / f"i{i}.png")
    (tmp_path / "l.tsv").write_text("".join(f"i{i}.png\tx\n" for i in range(40)))
    out = import_dataset("tsv", src, tmp_path / "out", labels=tmp_path / "l.tsv", workers=0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["image"]["buckets"] == AUTO
    used = {tuple(int(v) for v in key.split("x")) for key in manifest["buckets"]}
    crops, padded = [], []
    for path in (out / "images").glob("*.png"):
        with Image.open(path) as im:
            assert im.size in used
            rows, cols = np.nonzero(np.asarray(im) < 200)  # ink at the top left, after the 8 px margin
            crops.append((cols.max() + 1 + 8, rows.max() + 1 + 8))
            padded.append(im.size)
    ratio = sum(w * h for w, h in padded) / sum(w * h for w, h in crops)
    assert ratio <= 1.3 and ratio < pad_ratio(crops, DEFAULT_BUCKETS)
