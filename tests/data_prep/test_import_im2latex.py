"""Both real samples import with the right counts; a known image maps to its formula; pages crop tightly."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.images import load_gray
from data_prep.importers import import_dataset
from data_prep.importers._common import read_lines
from data_prep.vocab import Vocab


def _split(root: Path, split: str) -> dict[str, int]:
    return {n: int(i) for n, i in (ln.split() for ln in (root / f"{split}.lst").read_text().splitlines())}


@pytest.fixture(scope="module")
def processed(im2latex_sample, tmp_path_factory):
    return import_dataset("im2latex", im2latex_sample, tmp_path_factory.mktemp("p") / "im2latex")


def test_processed_sample_counts_and_alignment(processed, im2latex_sample):
    manifest = json.loads((processed / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 897, "validate": 85, "test": 100}
    formulas = (processed / "formulas.norm.lst").read_text().splitlines()
    source = read_lines(im2latex_sample / "formulas.norm.lst")
    # a known image: 1015942522.png is validate line ... of the source; find it through the source list
    source_lists = {}
    for split in ("train", "validate", "test"):
        for line in (im2latex_sample / f"{split}_filter.lst").read_text().splitlines():
            name, idx = line.split()
            source_lists[name] = (split, int(idx))
    for name in ("60ee748793.png", "7944775fc9.png", "5abbb9b19f.png", "1015942522.png"):
        split, idx = source_lists[name]
        assert formulas[_split(processed, split)[name]] == source[idx].strip()
    assert formulas[_split(processed, "train")["60ee748793.png"]].startswith("d s ^ { 2 } = ( 1 -")
    # every listed image is in images/ as grayscale PNG of a bucket size
    for name in list(_split(processed, "test"))[:20]:
        im = Image.open(processed / "images" / name)
        assert im.mode == "L" and f"{im.size[0]}x{im.size[1]}" in manifest["buckets"]
    # the 118 images in no list are reported, not silently lost
    unlisted = [d for d in manifest["dropped"] if d["reason"] == "image not in any split list"]
    assert len(unlisted) == 1200 - 1082 == manifest["dropped_count"]


def test_processed_sample_vocab_and_manifest(processed):
    vocab = Vocab.load(processed / "vocab.json")
    train_tokens = {
        tok
        for name, i in _split(processed, "train").items()
        for tok in (processed / "formulas.norm.lst").read_text().splitlines()[i].split()
    }
    assert set(vocab.id_to_token[4:]) == train_tokens
    manifest = json.loads((processed / "manifest.json").read_text())
    assert manifest["format"] == "im2latex" and manifest["data_prep_version"]
    assert len(manifest["content_hash"]) == 64
    assert sum(manifest["buckets"].values()) == 897 + 85 + 100


@pytest.mark.slow
def test_raw_sample_imports_and_crops_tightly(im2latex_raw_sample, tmp_path):
    from data_prep.importers import im2latex_raw

    assert im2latex_raw.DEFAULTS["downsample"] == 2  # halved by default, as im2markup does
    # full resolution on request, so the crop can be compared pixel for pixel with the page
    out = import_dataset("im2latex-raw", im2latex_raw_sample, tmp_path / "raw", margin=4, downsample=1)
    manifest = json.loads((out / "manifest.json").read_text())
    image_options = manifest["options"]["image"]
    assert image_options["downsample"] == 1 and image_options["buckets"] == "auto"
    reasons = {d["id"]: d["reason"] for d in manifest["dropped"]}
    # dropped: the three empty lines of the raw formulas.lst and the two formulas that are nothing but a
    # label and a TeX comment (their pages are blank); the 14 formulas that merely start with `%` are kept
    assert reasons == dict.fromkeys(
        ("1cfcbaafde", "2a7b3479a9", "6661013ddc", "1f6cbf77e4", "f0bf0dc25d"), "empty formula"
    )
    kept = sum(manifest["counts"].values())
    assert kept == 1200 - len(reasons) and kept == len((out / "formulas.norm.lst").read_text().splitlines())
    # crop tightly: the ink's bounding box in the prepared image starts exactly at the margin
    page = load_gray(im2latex_raw_sample / "images" / "1015942522.png")
    ys, xs = np.nonzero(page < 200)
    prepared = np.asarray(Image.open(out / "images" / "1015942522.png"))
    pys, pxs = np.nonzero(prepared < 200)
    assert (pys.min(), pxs.min()) == (4, 4)
    assert (pys.max() - pys.min(), pxs.max() - pxs.min()) == (ys.max() - ys.min(), xs.max() - xs.min())
    assert prepared.shape[0] <= 200 and prepared.shape[1] < page.shape[1]  # a page is 1654x2339
    # raw LaTeX was tokenised: \label dropped, line 1's {\rm hopf} split into characters
    formulas = (out / "formulas.norm.lst").read_text().splitlines()
    line = formulas[_split(out, "train")["66667cee5b.png"]]
    assert r"\label" not in line and r"\rm h o p f" in line
