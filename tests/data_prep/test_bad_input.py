"""Every bad-input case is skipped, recorded in the manifest with its reason, and never kills the run."""

import json

import pytest

from data_prep.__main__ import main
from data_prep.importers import import_dataset
from data_prep.pipeline import NoUsableDataError
from tests.data_prep._ingest_fixtures import formula_image, make_bad_input_tsv, save, tree_snapshot


def test_each_bad_input_ends_in_the_manifest(tmp_path):
    labels, expected = make_bad_input_tsv(tmp_path / "src")
    before = tree_snapshot(tmp_path / "src")
    out = import_dataset("tsv", tmp_path / "src" / "images", tmp_path / "out", labels=labels,
                         max_pixels=5_000_000, split_ratio=(1, 0, 0), workers=0)  # fmt: skip
    assert tree_snapshot(tmp_path / "src") == before
    manifest = json.loads((out / "manifest.json").read_text())
    reasons = {d["id"]: d["reason"] for d in manifest["dropped"]}
    assert set(reasons) == set(expected)
    for item_id, reason in expected.items():
        assert reason in reasons[item_id], (item_id, reasons[item_id])
    assert manifest["counts"]["train"] == 3
    assert sorted((out / "images").iterdir()) == sorted(out / "images" / f"good{i}.png" for i in (1, 2, 3))


def test_nothing_usable_exits_non_zero_and_leaves_nothing(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(b"")
    (tmp_path / "l.tsv").write_text("a.png\tx\nb.png\ty\n")
    with pytest.raises(NoUsableDataError, match="nothing usable"):
        import_dataset("tsv", src, tmp_path / "out", labels=tmp_path / "l.tsv", workers=0)
    code = main(["import", "--format", "tsv", "--src", str(src), "--labels", str(tmp_path / "l.tsv"),
                 "--out", str(tmp_path / "out"), "--workers", "0"])  # fmt: skip
    assert code == 2 and "nothing usable" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.tsv", "src"]  # no output, no temp folder


def test_missing_source_exits_non_zero(tmp_path, capsys):
    assert (
        main(["import", "--format", "course", "--src", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_course_label_problems_are_reported(tmp_path):
    train = tmp_path / "src" / "train"
    for stem in ("ok", "latin1", "empty", "nolabel"):
        save(formula_image("x"), train / f"{stem}.png")
    (train / "ok.txt").write_text("$x$")
    (train / "latin1.txt").write_bytes("$\\text{é}$".encode("latin-1"))
    (train / "empty.txt").write_text("")
    (train / "orphan.txt").write_text("$y$")
    out = import_dataset("course", tmp_path / "src", tmp_path / "out", workers=0)
    reasons = {d["id"]: d["reason"] for d in json.loads((out / "manifest.json").read_text())["dropped"]}
    assert set(reasons) == {"latin1", "empty", "nolabel", "orphan"}
    assert "not UTF-8" in reasons["latin1"] and reasons["empty"] == "empty formula"
    assert "missing label file nolabel.txt" in reasons["nolabel"] and "no image" in reasons["orphan"]


def test_corrupt_files_in_a_real_sample_copy_are_dropped_with_their_reasons(im2latex_sample, tmp_path):
    """The real im2latex sample with what a broken download or disk leaves: a truncated PNG, a zero-byte
    one, text named .png, a decompression bomb, a non-UTF-8 formula line and a split line naming an image
    that is not there. Every other item imports; the copy is not written to."""
    import shutil

    import numpy as np

    src = shutil.copytree(im2latex_sample, tmp_path / "sample")
    rows = [line.split() for line in (src / "train_filter.lst").read_text().splitlines() if line.strip()]
    (truncated, _), (zero, _), (text, _), (bomb, _), (bad_utf8, line) = rows[:5]
    images = src / "images_processed"
    (images / truncated).write_bytes((images / truncated).read_bytes()[:200])
    (images / zero).write_bytes(b"")
    (images / text).write_text("<html>404 not found</html>")
    huge = np.full((7000, 7000), 255, np.uint8)
    huge[3500, 100:6900] = 0
    save(huge, images / bomb)
    formulas = (src / "formulas.norm.lst").read_bytes().split(b"\n")
    formulas[int(line)] = b"\\frac { a } { b } \xff\xfe"
    (src / "formulas.norm.lst").write_bytes(b"\n".join(formulas))
    with (src / "train_filter.lst").open("a") as f:
        f.write("not_there.png 0\n")
    before = tree_snapshot(src)
    out = import_dataset("im2latex", src, tmp_path / "out", workers=0)  # the bomb: 49 M > 40 M pixels
    reasons = {d["id"]: d["reason"] for d in json.loads((out / "manifest.json").read_text())["dropped"]}
    stem = lambda name: name.rsplit(".", 1)[0]  # noqa: E731
    assert "unreadable image" in reasons[stem(truncated)]
    assert "zero-byte" in reasons[stem(zero)]
    assert "unreadable image" in reasons[stem(text)]
    assert "decompression-bomb" in reasons[stem(bomb)]
    assert "not UTF-8" in reasons[stem(bad_utf8)]
    assert "missing image file" in reasons["not_there"]
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["train"] == len(rows) - 5 and counts["validate"] == 85 and counts["test"] == 100
    assert tree_snapshot(src) == before
