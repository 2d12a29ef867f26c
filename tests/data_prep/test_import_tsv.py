"""tsv: header, quotes, CRLF, optional split column; otherwise split by seed and ratio."""

import json
import os

from data_prep.importers import import_dataset
from tests.data_prep._ingest_fixtures import formula_image, save


def _folder(tmp_path, n=20):
    for i in range(n):
        save(formula_image(f"x_{{{i}}}+{i}"), tmp_path / "src" / f"img{i}.png")
    return tmp_path / "src"


def test_tsv_header_quotes_crlf_and_split_column(tmp_path):
    src = _folder(tmp_path, 6)
    rows = ["image\tlatex\tsplit", 'img0.png\t"x_{0}+0"\ttrain', 'img1.png\t"a\tb"\ttrain',
            "img2.png\tx\tdev", "img3.png\t$y$\ttest", "img4.png\tz\tTRAIN",
            "img5.png\tw\tholdout"]  # fmt: skip
    (tmp_path / "labels.tsv").write_bytes("\r\n".join(rows).encode() + b"\r\n")
    out = import_dataset("tsv", src, tmp_path / "out", labels=tmp_path / "labels.tsv", workers=0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 3, "validate": 1, "test": 1}
    assert [d["id"] for d in manifest["dropped"]] == ["img5"] and "unknown split" in manifest["dropped"][0][
        "reason"
    ]
    formulas = (out / "formulas.norm.lst").read_text().splitlines()
    assert formulas[0] == "x _ { 0 } + 0" and formulas[1] == "a b"  # quoted tab kept inside the field
    assert not any("\r" in f for f in formulas)
    assert formulas[4] == "y"  # test row 'img3.png $y$': $ stripped


def test_tsv_without_split_column_splits_by_seed_and_ratio(tmp_path):
    src = _folder(tmp_path, 20)
    (src.parent / "l.tsv").write_text("".join(f"img{i}.png\tx+{i}\n" for i in range(20)))

    def splits(name, seed):
        ratio = (0.5, 0.25, 0.25)
        labels = src.parent / "l.tsv"
        out = import_dataset(
            "tsv", src, tmp_path / name, labels=labels, split_ratio=ratio, split_seed=seed, workers=0
        )
        return {s: sorted((out / f"{s}.lst").read_text().split()[::2]) for s in ("train", "validate", "test")}

    a, b, c = splits("a", 1), splits("b", 1), splits("c", 2)
    assert a == b and a != c
    assert [len(a[s]) for s in ("train", "validate", "test")] == [10, 5, 5]
    assert sorted(sum(a.values(), [])) == sorted(f"img{i}.png" for i in range(20))


def test_same_name_different_extension_keeps_each_image_with_its_own_label(tmp_path):
    src = tmp_path / "src"
    save(formula_image("a+b"), src / "dup.png")
    save(formula_image("x^{2}"), src / "dup.jpg")
    (tmp_path / "l.tsv").write_text("dup.png\ta+b\ttrain\ndup.jpg\tx^{2}\ttrain\n")
    out = import_dataset("tsv", src, tmp_path / "out", labels=tmp_path / "l.tsv", workers=0)
    formulas = (out / "formulas.norm.lst").read_text().splitlines()
    rows = [line.split() for line in (out / "train.lst").read_text().splitlines()]
    assert sorted(formulas[int(i)] for _, i in rows) == ["a + b", "x ^ { 2 }"]
    images = {formulas[int(i)]: (out / "images" / name).read_bytes() for name, i in rows}
    assert images["a + b"] != images["x ^ { 2 }"], "each label keeps its own picture"


def test_a_file_name_that_is_not_utf8_is_recorded_not_fatal(tmp_path):
    src = _folder(tmp_path, 3)
    save(formula_image("z"), src / "ok.png")
    bad_name = os.fsdecode(b"bad\xff.png")  # a Latin-1 name from an old archive
    (src / "ok.png").rename(src / bad_name)
    (tmp_path / "l.tsv").write_text("".join(f"img{i}.png\tx+{i}\ttrain\n" for i in range(3)))
    out = import_dataset("tsv", src, tmp_path / "out", labels=tmp_path / "l.tsv", workers=0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["train"] == 3
    [dropped] = manifest["dropped"]
    assert dropped["id"] == "bad\udcff" and "no row" in dropped["reason"]


def test_tsv_finds_images_by_relative_path_in_subfolders(tmp_path):
    """A public handwritten set's layout: train/<collection>/<name>.png, labels `<collection>/<name><TAB>
    latex` without extension and with a space before the LaTeX."""
    src = tmp_path / "train"
    for rel in ("c1/a.png", "c2/a.png", "c2/b.jpg", "c3/d.png", "c3/d.jpg", "c4/deep/e.png", "top.png"):
        save(formula_image("x+1"), src / rel)
    rows = ["c1/a\t x ^ { 2 }", "c2/a.png\t  y + 1 ", "b\t z", "c3/d\t w", "a\t v", "./c4/deep/e\t u",
            "c1/missing\t t"]  # fmt: skip
    (tmp_path / "labels.tsv").write_text("\n".join(rows) + "\n")
    before = sorted(p.relative_to(src).as_posix() for p in src.rglob("*"))
    out = import_dataset("tsv", src, tmp_path / "out", labels=tmp_path / "labels.tsv", workers=0,
                         split_ratio=(1, 0, 0))  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["train"] == 4  # c1/a, c2/a, c2/b (found by its stem alone), c4/deep/e
    names = sorted(line.split()[0] for line in (out / "train.lst").read_text().splitlines())
    assert names == ["c1__a.png", "c2__a.png", "c2__b.png", "c4__deep__e.png"]  # unique, from the paths
    formulas = (out / "formulas.norm.lst").read_text().splitlines()
    assert sorted(formulas) == sorted(["x ^ { 2 }", "y + 1", "z", "u"])  # surrounding whitespace trimmed
    reasons = {d["origin"]: d["reason"] for d in manifest["dropped"]}
    assert "several images share the id 'd'" in reasons["labels.tsv:4"]  # c3/d.png and c3/d.jpg
    assert "several images share the id 'a'" in reasons["labels.tsv:5"]  # a bare `a`: c1/a or c2/a?
    assert "missing image file c1/missing" in reasons["labels.tsv:7"]
    assert {"c3/d.png", "c3/d.jpg", "top.png"} <= {d["origin"] for d in manifest["dropped"]}  # no row
    assert sorted(p.relative_to(src).as_posix() for p in src.rglob("*")) == before  # source untouched
