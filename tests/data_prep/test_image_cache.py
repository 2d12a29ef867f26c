"""python -m pytest tests/data_prep/test_image_cache.py -q"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os

import numpy as np
import pytest
from PIL import Image

from data_prep import image_cache
from data_prep.dataset import read_split
from data_prep.image_cache import load_or_build, read_gray
from tests.data_prep._loading_fixtures import make_im2latex_prepared, make_tiny_prepared, write_manifest


def split_names(root, split):
    return [name for name, _ in read_split(root, split)]


def pil_gray(path):
    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


def test_cache_matches_png_decode_pixel_for_pixel_on_real_images(im2latex_sample, tmp_path):
    root = make_im2latex_prepared(im2latex_sample, tmp_path / "real", {"train": 30})
    names = split_names(root, "train")
    cache = load_or_build(root, "train", names)
    assert len(cache.entries) == 30 and not cache.skipped
    for name in names:
        expected = pil_gray(root / "images" / name)
        got = cache.get(name)
        assert got.dtype == np.uint8 and got.shape == expected.shape == cache.shape(name)
        np.testing.assert_array_equal(got, expected)


def test_unchanged_dataset_reuses_the_cache(tmp_path, monkeypatch):
    root = make_tiny_prepared(tmp_path / "d")
    names = split_names(root, "train")
    load_or_build(root, "train", names)

    def no_decoding(path):
        raise AssertionError(f"{path} decoded again although the cache is current")

    monkeypatch.setattr(image_cache, "_decode", no_decoding)
    cache = load_or_build(root, "train", names)
    assert len(cache.entries) == len(names)


def test_changed_content_hash_rebuilds_the_cache(tmp_path):
    root = make_tiny_prepared(tmp_path / "d")
    names = split_names(root, "train")
    old = load_or_build(root, "train", names)
    changed = np.zeros(old.shape(names[0]), dtype=np.uint8)  # same size, new pixels
    Image.fromarray(changed).save(root / "images" / names[0])
    write_manifest(root, "a-new-content-hash")
    new = load_or_build(root, "train", names)
    assert new.data_path != old.data_path
    np.testing.assert_array_equal(new.get(names[0]), changed)
    assert not old.data_path.exists(), "the stale data file should be removed"
    leftovers = [p.name for p in (root / "cache").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_without_manifest_a_rewritten_image_rebuilds_the_cache(tmp_path):
    root = make_tiny_prepared(tmp_path / "d", with_manifest=False)
    names = split_names(root, "validate")
    old = load_or_build(root, "validate", names)
    h, w = old.shape(names[1])
    Image.fromarray(np.full((h, w), 7, dtype=np.uint8)).save(root / "images" / names[1])
    os.utime(root / "images" / names[1], ns=(1, 1))  # a different mtime even on coarse clocks
    new = load_or_build(root, "validate", names)
    assert int(new.get(names[1]).max()) == 7


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b""),  # zero bytes
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),  # truncated
        lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20),  # not a PNG past the signature
        lambda p: p.unlink(),  # missing
    ],
    ids=["empty", "truncated", "garbage", "missing"],
)
def test_corrupt_image_is_skipped_and_recorded(tmp_path, caplog, damage):
    root = make_tiny_prepared(tmp_path / "d")
    names = split_names(root, "train")
    damage(root / "images" / names[2])
    with caplog.at_level(logging.WARNING, logger="data_prep.image_cache"):
        cache = load_or_build(root, "train", names)
    assert names[2] not in cache
    assert [s["name"] for s in cache.skipped] == [names[2]]
    assert cache.skipped[0]["reason"]
    assert names[2] in caplog.text
    assert len(cache.entries) == len(names) - 1
    index = json.loads((root / "cache" / "train.json").read_text())
    assert index["skipped"] == cache.skipped  # recorded on disk too, for the next process


def _build_in_child(root, names, queue):
    cache = load_or_build(root, "train", names)
    queue.put({n: cache.get(n).tobytes() for n in names})


def test_two_processes_building_at_once_agree(tmp_path):
    root = make_tiny_prepared(tmp_path / "d")
    names = split_names(root, "train")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build_in_child, args=(root, names, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0] == results[1]
    assert results[0][names[0]] == pil_gray(root / "images" / names[0]).tobytes()
    assert len(list((root / "cache").glob("train-*.u8"))) == 1


def test_transparent_background_reads_as_white(tmp_path):
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)  # fully transparent black ...
    rgba[3:6, 5:9] = (0, 0, 0, 255)  # ... around an opaque black stroke
    Image.fromarray(rgba).save(tmp_path / "t.png")
    gray = read_gray(tmp_path / "t.png")
    assert gray[0, 0] == 255 and gray[4, 6] == 0


@pytest.mark.parametrize("garbage", ["{not json", "[1, 2]", '{"version": 1, "key": "x"}'])
def test_a_damaged_index_is_rebuilt_not_fatal(tmp_path, garbage):
    root = make_tiny_prepared(tmp_path / "d")
    names = split_names(root, "test")
    load_or_build(root, "test", names)
    index = root / "cache" / "test.json"
    if garbage.startswith('{"version"'):  # the right key, but the fields are gone
        garbage = json.dumps({"version": 1, "key": json.loads(index.read_text())["key"]})
    index.write_text(garbage)
    cache = load_or_build(root, "test", names)
    np.testing.assert_array_equal(cache.get(names[0]), pil_gray(root / "images" / names[0]))


def test_building_the_cache_leaves_the_content_hash_unchanged(tmp_path):
    from data_prep.manifest import content_hash

    root = make_tiny_prepared(tmp_path / "d")
    before = content_hash(root)
    load_or_build(root, "train", split_names(root, "train"))
    assert (root / image_cache.CACHE_DIRNAME).is_dir()
    assert content_hash(root) == before
