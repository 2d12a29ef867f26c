"""python -m pytest tests/data_prep/test_dataset.py -q"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from data_prep.augment import AugmentConfig
from data_prep.dataset import FormulaDataset, build_loader, collate_batch, read_split
from data_prep.vocab import EOS_ID, PAD_ID, SOS_ID, Vocab
from tests.data_prep._loading_fixtures import (
    TINY_COUNTS,
    TINY_SIZES,
    make_im2latex_prepared,
    make_tiny_prepared,
)

STRONG = AugmentConfig(noise_prob=1.0, noise_std=0.3, affine_prob=1.0, rotate_deg=5.0)


@pytest.fixture
def tiny(tmp_path):
    root = make_tiny_prepared(tmp_path / "tiny")
    return root, Vocab.load(root / "vocab.json")


@pytest.fixture(scope="module")
def real(im2latex_sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("im2latex") / "prepared"
    make_im2latex_prepared(im2latex_sample, root, {"train": 48, "validate": 12, "test": 12})
    return root, Vocab.load(root / "vocab.json")


def pil_gray(path):
    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


def test_items_follow_the_contract(tiny):
    root, vocab = tiny
    ds = FormulaDataset(root, "train", vocab)
    formulas = (root / "formulas.norm.lst").read_text().splitlines()
    assert len(ds) == TINY_COUNTS["train"] * len(TINY_SIZES) == len(ds.sizes)
    for i, (name, line) in enumerate(read_split(root, "train")):
        item = ds[i]
        assert item["id"] == name and item["index"] == i
        image = item["image"]
        assert image.dtype == torch.float32 and image.shape == (1, *ds.sizes[i])
        assert 0.0 <= image.min() < 0.5 and image.max() == 1.0  # dark ink on a white (1.0) page
        assert ds.formula_tokens(i) == formulas[line].split()
        assert item["target"].tolist() == [SOS_ID, *vocab.encode(formulas[line].split()), EOS_ID]


def test_split_without_formulas_has_empty_targets(tiny):
    root, vocab = tiny
    ds = FormulaDataset(root, "test", vocab)
    assert len(ds) == TINY_COUNTS["test"] * len(TINY_SIZES)
    assert ds[0]["target"].numel() == 0 and ds.formula_tokens(0) == []
    batch = next(iter(build_loader(root, "test", vocab, 4)))
    assert batch.targets.shape == (len(batch), 0)


def test_max_formula_len_and_limit(tiny, caplog):
    root, vocab = tiny
    full = FormulaDataset(root, "train", vocab)
    lengths = [len(full.formula_tokens(i)) for i in range(len(full))]
    cap = sorted(lengths)[len(lengths) // 2]
    with caplog.at_level(logging.INFO, logger="data_prep.dataset"):
        short = FormulaDataset(root, "train", vocab, max_formula_len=cap)
    assert short.num_too_long == sum(n > cap for n in lengths) > 0
    assert len(short) == sum(n <= cap for n in lengths)
    assert all(len(short.formula_tokens(i)) <= cap for i in range(len(short)))
    assert caplog.text.count("longer than") == 1
    limited = FormulaDataset(root, "train", vocab, limit=5)
    assert limited.names == full.names[:5]


def test_cached_and_png_images_are_identical_on_real_data(real):
    root, vocab = real
    cached = FormulaDataset(root, "train", vocab)
    plain = FormulaDataset(root, "train", vocab, use_cache=False)
    assert cached.cache is not None and plain.cache is None
    assert cached.sizes == plain.sizes and cached.names == plain.names
    for i in range(0, len(cached), 5):
        torch.testing.assert_close(cached[i]["image"], plain[i]["image"], rtol=0, atol=0)
        expected = torch.from_numpy(pil_gray(root / "images" / cached.names[i]).astype(np.float32) / 255)
        torch.testing.assert_close(cached[i]["image"][0], expected, rtol=0, atol=0)


def test_real_image_maps_to_its_formula(real, im2latex_sample):
    root, vocab = real
    name, line = (im2latex_sample / "train_filter.lst").read_text().split("\n")[0].split()
    formula = (im2latex_sample / "formulas.norm.lst").read_text(encoding="utf-8").split("\n")[int(line)]
    ds = FormulaDataset(root, "train", vocab)
    i = ds.names.index(name)
    assert ds.formula_tokens(i) == formula.split()
    assert vocab.decode(ds[i]["target"].tolist()) == formula.split()


def test_loader_on_real_images_batches_one_bucket_and_covers_the_split(real):
    root, vocab = real
    loader = build_loader(root, "validate", vocab, 4, shuffle=True, seed=3)
    loader.batch_sampler.set_epoch(1)
    seen = []
    for batch in loader:
        assert batch.images.dim() == 4 and batch.images.shape[1] == 1
        lengths = (batch.targets != PAD_ID).sum(1)
        assert (batch.targets[:, 0] == SOS_ID).all()
        assert (batch.targets[torch.arange(len(batch)), lengths - 1] == EOS_ID).all()
        seen.extend(batch.indices)
    assert sorted(seen) == list(range(len(loader.dataset)))


def test_collate_pads_with_pad_and_rejects_mixed_sizes():
    items = [
        {"image": torch.ones(1, 4, 6), "target": torch.tensor([SOS_ID, 7, EOS_ID]), "id": "a", "index": 0},
        {"image": torch.zeros(1, 4, 6), "target": torch.tensor([SOS_ID, 5, 6, 8, EOS_ID]), "id": "b",
         "index": 3},
    ]
    batch = collate_batch(items)
    assert batch.images.shape == (2, 1, 4, 6)
    assert batch.targets.tolist() == [[SOS_ID, 7, EOS_ID, PAD_ID, PAD_ID], [SOS_ID, 5, 6, 8, EOS_ID]]
    assert batch.ids == ["a", "b"] and batch.indices == [0, 3]
    moved = batch.to("cpu")
    assert torch.equal(moved.targets, batch.targets)
    items[1]["image"] = torch.zeros(1, 5, 6)
    with pytest.raises(ValueError, match="BucketBatchSampler"):
        collate_batch(items)


def test_augment_only_when_passed(tiny):
    root, vocab = tiny
    plain = next(iter(build_loader(root, "train", vocab, 4)))
    again = next(iter(build_loader(root, "train", vocab, 4)))
    augmented = next(iter(build_loader(root, "train", vocab, 4, augment=STRONG)))
    assert plain.ids == augmented.ids
    assert torch.equal(plain.images, again.images)
    assert not torch.equal(plain.images, augmented.images)
    assert augmented.images.shape == plain.images.shape
    for split in ("validate", "test"):
        with pytest.raises(ValueError, match="augment=None"):
            build_loader(root, split, vocab, 4, augment=STRONG)


def test_workers_load_the_same_batches_as_the_main_process(tiny):
    root, vocab = tiny
    plain = list(build_loader(root, "train", vocab, 3, shuffle=True, seed=1))
    workers = list(build_loader(root, "train", vocab, 3, shuffle=True, seed=1, num_workers=2, augment=STRONG))
    assert [b.ids for b in workers] == [b.ids for b in plain]
    assert all(w.images.shape == p.images.shape for w, p in zip(workers, plain, strict=True))
    assert any(not torch.equal(w.images, p.images) for w, p in zip(workers, plain, strict=True))


@pytest.mark.parametrize("use_cache", [True, False])
def test_corrupt_image_is_skipped_with_a_record(tiny, use_cache):
    root, vocab = tiny
    victim = read_split(root, "validate")[1][0]
    (root / "images" / victim).write_bytes(b"not an image at all")
    ds = FormulaDataset(root, "validate", vocab, use_cache=use_cache)
    assert victim not in ds.names
    assert len(ds) == TINY_COUNTS["validate"] * len(TINY_SIZES) - 1
    assert [s["name"] for s in ds.skipped] == [victim]
    batches = list(build_loader(root, "validate", vocab, 2, use_cache=use_cache))
    assert sum(len(b) for b in batches) == len(ds)


def test_missing_data_names_the_make_command(tmp_path, tiny):
    root, vocab = tiny
    with pytest.raises(FileNotFoundError, match="make data"):
        FormulaDataset(tmp_path / "nowhere", "train", vocab)
    with pytest.raises(FileNotFoundError, match="make data"):
        FormulaDataset(root, "no_such_split", vocab)
    (root / "formulas.norm.lst").unlink()
    with pytest.raises(FileNotFoundError, match="formulas.norm.lst"):
        FormulaDataset(root, "train", vocab)


def test_unwritable_cache_falls_back_to_decoding_pngs(tiny, monkeypatch, caplog):
    root, vocab = tiny

    def read_only(*args):
        raise PermissionError(13, "Permission denied", str(root / "cache"))

    monkeypatch.setattr("data_prep.dataset.load_or_build", read_only)
    with caplog.at_level(logging.WARNING, logger="data_prep.dataset"):
        ds = FormulaDataset(root, "validate", vocab)
    assert ds.cache is None and "decoding PNGs instead" in caplog.text
    assert len(ds) == TINY_COUNTS["validate"] * len(TINY_SIZES)
    np.testing.assert_array_equal(ds.load_image(0), pil_gray(root / "images" / ds.names[0]))
