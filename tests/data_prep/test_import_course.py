"""The course layout: Mathpix labels, error mathpix / multi-line / Chinese drops, an unlabelled test split."""

import json

import pytest

from data_prep.importers import import_dataset
from tests.data_prep._ingest_fixtures import (
    COURSE_BAD,
    COURSE_GOOD,
    COURSE_TEST_IDS,
    formula_image,
    make_course,
    save,
    tree_snapshot,
)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    src = make_course(tmp_path_factory.mktemp("course") / "src")
    before = tree_snapshot(src)
    out = import_dataset("course", src, src.parent / "out", workers=0)
    assert tree_snapshot(src) == before  # never writes into the source folder
    return src, out


def test_course_drops_exactly_the_bad_labels(course):
    _, out = course
    manifest = json.loads((out / "manifest.json").read_text())
    dropped = {d["id"]: (d["split"], d["reason"]) for d in manifest["dropped"]}
    assert set(dropped) == set(COURSE_BAD)
    for stem, (split, _, reason) in COURSE_BAD.items():
        assert dropped[stem][0] == {"dev": "validate"}.get(split, split)
        assert reason in dropped[stem][1]
    assert manifest["counts"] == {"train": 6, "validate": 2, "test": 3}


def test_course_labels_and_unlabelled_test_split(course):
    _, out = course
    formulas = (out / "formulas.norm.lst").read_text().splitlines()
    train = dict(line.split() for line in (out / "train.lst").read_text().splitlines())
    assert formulas[int(train["t2.png"])] == r"\frac { a } { b }"  # $ stripped, tokenised
    assert formulas[int(train["t6.png"])] == r"\left( x \right)"
    assert len(formulas) == sum(len(v) for v in COURSE_GOOD.values())
    test_lines = (out / "test.lst").read_text().splitlines()
    assert sorted(test_lines) == sorted(f"{i}.png" for i in COURSE_TEST_IDS)
    assert all((out / "images" / name).is_file() for name in test_lines)


def test_course_keep_switches_keep_them(course, tmp_path):
    src, _ = course
    out = import_dataset(
        "course", src, tmp_path / "all", keep_multiline=True, drop_non_ascii=False, workers=0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert {d["id"] for d in manifest["dropped"]} == {"t7", "d3"}  # only the error mathpix ones


def test_ids_shared_by_two_images_are_dropped_with_reason_and_txt_case_is_ignored(tmp_path):
    src = tmp_path / "src"
    save(formula_image("a+b"), src / "train" / "p1.png")
    (src / "train" / "p1.TXT").write_text("$a+b$", encoding="utf-8")
    save(formula_image("y"), src / "train" / "p2.png")
    save(formula_image("z"), src / "train" / "p2.jpg")
    (src / "train" / "p2.txt").write_text("$y$", encoding="utf-8")
    out = import_dataset("course", src, tmp_path / "out", workers=0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / "train.lst").read_text().split() == ["p1.png", "0"]
    assert (out / "formulas.norm.lst").read_text().split() == ["a", "+", "b"]
    [dropped] = manifest["dropped"]
    assert dropped["id"] == "p2" and "several images share the id" in dropped["reason"]


def test_force_never_deletes_a_source_that_lies_inside_out(tmp_path):
    src = tmp_path / "parent" / "src"
    make_course(src)
    before = tree_snapshot(src)
    with pytest.raises(ValueError, match="lies inside --out"):
        import_dataset("course", src, tmp_path / "parent", overwrite=True, workers=0)
    assert tree_snapshot(src) == before
