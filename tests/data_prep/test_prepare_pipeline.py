"""The shared pipeline: atomic output, overwrite rules, manifest content and hash, alignment reports."""

import json

import pytest

from data_prep import pipeline
from data_prep.items import RawItem
from data_prep.manifest import content_hash
from data_prep.pipeline import PrepareOptions, prepare_dataset
from tests.data_prep._ingest_fixtures import formula_image, save


def _items(tmp_path, n=6, split="train"):
    paths = [save(formula_image(f"x+{i}"), tmp_path / "src" / f"i{i}.png") for i in range(n)]
    return [RawItem(f"i{i}", split, p, f"x+{i}", origin=p.name) for i, p in enumerate(paths)]


def test_manifest_records_everything(tmp_path):
    items = _items(tmp_path) + [RawItem("lost", "train", None, "y", origin="y.txt")]
    out = prepare_dataset(
        items, tmp_path / "out", source="unit", fmt="test", options=PrepareOptions(workers=0)
    )
    m = json.loads((out / "manifest.json").read_text())
    assert (
        m["source"] == "unit" and m["format"] == "test" and m["options"]["formula"]["keep_multiline"] is False
    )
    assert m["counts"] == {"train": 6, "validate": 0, "test": 0}
    assert m["dropped"] == [
        {"id": "lost", "split": "train", "reason": "no image for this label", "origin": "y.txt"}
    ]
    assert sum(m["buckets"].values()) == 6 and m["content_hash"] == content_hash(out)
    (out / "train.lst").write_text("tampered\n")
    assert content_hash(out) != m["content_hash"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "images",
            "formulas.norm.lst",
            "train.lst",
            "validate.lst",
            "test.lst",
            "vocab.json",
            "manifest.json",
        ]
    )


def test_a_crash_leaves_no_half_dataset(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "_write_lists", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare_dataset(
            _items(tmp_path), tmp_path / "out", source="s", fmt="t", options=PrepareOptions(workers=0)
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_existing_output_needs_overwrite(tmp_path):
    items = _items(tmp_path)
    out = prepare_dataset(items, tmp_path / "out", source="s", fmt="t", options=PrepareOptions(workers=0))
    with pytest.raises(FileExistsError, match="--force"):
        prepare_dataset(items[:2], out, source="s", fmt="t", options=PrepareOptions(workers=0))
    prepare_dataset(items[:2], out, source="s", fmt="t", options=PrepareOptions(workers=0, overwrite=True))
    assert json.loads((out / "manifest.json").read_text())["counts"]["train"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_unlabelled_image_in_a_labelled_split_is_reported(tmp_path):
    items = _items(tmp_path, 3)
    items[1].formula = None
    out = prepare_dataset(items, tmp_path / "out", source="s", fmt="t", options=PrepareOptions(workers=0))
    m = json.loads((out / "manifest.json").read_text())
    assert [(d["id"], "no formula" in d["reason"]) for d in m["dropped"]] == [("i1", True)]
    assert not (out / "images" / "i1.png").exists()


def test_same_id_in_two_splits_keeps_both(tmp_path):
    a = _items(tmp_path, 2, "train")
    b = [RawItem("i0", "validate", a[1].image, "z")]
    out = prepare_dataset(a + b, tmp_path / "out", source="s", fmt="t", options=PrepareOptions(workers=0))
    assert (out / "validate.lst").read_text() == "validate-i0.png 2\n"
    assert (out / "formulas.norm.lst").read_text().splitlines()[2] == "z"
