"""The bad-input sweep (issue 20): imports tried as a new user with messy data would. Each case gets a
clear error (exit 2) or imports what it can; the source and the user's files are never touched."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from data_prep.__main__ import main
from data_prep.importers import import_dataset
from tests.data_prep._ingest_fixtures import save, tree_snapshot


def picture(i: int = 0) -> np.ndarray:
    """A small distinct picture with ink (cheaper than rendering LaTeX)."""
    return np.pad(np.zeros((8, 8 + 3 * i), np.uint8), 8, constant_values=255)


def tsv_source(root: Path, rows: list[str], n: int = 3) -> tuple[Path, Path]:
    """(images folder `root/src`, labels file `root/labels.tsv`) with img0.png ... img{n-1}.png."""
    for i in range(n):
        save(picture(i), root / "src" / f"img{i}.png")
    (root / "labels.tsv").write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    return root / "src", root / "labels.tsv"


def cli(capsys, *argv) -> tuple[int, str]:
    """(exit code, stderr) of `python -m data_prep ...`; argparse's own refusals exit 2 too."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def tsv_import(capsys, src: Path, labels: Path, out: Path, *extra) -> tuple[int, str]:
    return cli(capsys, "import", "--format", "tsv", "--src", src, "--labels", labels, "--out", out,
               "--workers", "0", "--split-ratio", "1", "0", "0", *extra)  # fmt: skip


def manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def formulas_by_image(out: Path, split: str = "train") -> dict[str, str]:
    formulas = (out / "formulas.norm.lst").read_text().splitlines()
    rows = [line.split() for line in (out / f"{split}.lst").read_text().splitlines()]
    return {name: formulas[int(i)] for name, i in rows}


def reasons_by_origin(out: Path) -> dict[str, str]:
    return {d["origin"]: d["reason"] for d in manifest_of(out)["dropped"]}


# ---- --force never deletes the user's data ------------------------------------------------------------


def test_force_refuses_an_out_that_holds_the_labels_file(tmp_path, capsys):
    src, _ = tsv_source(tmp_path, ["img0.png\tx"])
    out = tmp_path / "o"
    assert tsv_import(capsys, src, tmp_path / "labels.tsv", out)[0] == 0  # a real prepared dataset
    labels = out / "labels.tsv"
    labels.write_text("img0.png\tx\n")
    before = tree_snapshot(out)
    code, err = tsv_import(capsys, src, labels, out, "--force")
    assert code == 2 and "--labels" in err and "lies inside --out" in err
    assert tree_snapshot(out) == before and labels.read_text() == "img0.png\tx\n"


def test_force_refuses_a_folder_data_prep_did_not_make(tmp_path, capsys):
    src, labels = tsv_source(tmp_path, ["img0.png\tx"])
    out = tmp_path / "thesis"
    (out / "chapter1").mkdir(parents=True)
    (out / "notes.txt").write_text("three years of work")
    before = tree_snapshot(out)
    code, err = tsv_import(capsys, src, labels, out, "--force")
    assert code == 2 and "no data_prep manifest.json" in err and "notes.txt" in err
    assert tree_snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tsv", "src", "thesis"]  # no temp left


def test_force_refuses_to_delete_a_file_added_to_a_prepared_dataset(tmp_path, capsys):
    src, labels = tsv_source(tmp_path, ["img0.png\tx", "img1.png\ty"])
    out = tmp_path / "o"
    assert tsv_import(capsys, src, labels, out)[0] == 0
    (out / "my_notes.md").write_text("keep me")
    (out / "cache").mkdir()  # the loader's own cache is data_prep's to replace
    code, err = tsv_import(capsys, src, labels, out, "--force")
    assert code == 2 and "my_notes.md" in err and "did not write" in err
    assert (out / "my_notes.md").read_text() == "keep me" and (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tsv", "o", "src"]


def test_force_replaces_a_prepared_dataset_and_an_empty_folder(tmp_path, capsys):
    src, labels = tsv_source(tmp_path, ["img0.png\tx", "img1.png\ty"])
    out = tmp_path / "o"
    out.mkdir()
    assert tsv_import(capsys, src, labels, out)[0] == 0  # empty: no --force needed
    (out / "cache").mkdir()
    labels.write_text("img0.png\tz\n")
    assert tsv_import(capsys, src, labels, out, "--force")[0] == 0
    assert formulas_by_image(out) == {"img0.png": "z"} and not (out / "cache").exists()


# ---- crashes that are now a clear error or an import -----------------------------------------------


@pytest.mark.parametrize("line_end", ["\r", "\r\n"])
def test_cr_only_and_crlf_line_ends_import(tmp_path, capsys, line_end):
    src, labels = tsv_source(tmp_path, [], 2)
    labels.write_bytes(f"img0.png\tx{line_end}img1.png\ty{line_end}".encode())
    assert tsv_import(capsys, src, labels, tmp_path / "o")[0] == 0
    assert formulas_by_image(tmp_path / "o") == {"img0.png": "x", "img1.png": "y"}


def test_a_stray_cr_in_a_row_is_a_space(tmp_path, capsys):
    src, labels = tsv_source(tmp_path, [], 2)
    labels.write_bytes(b"img0.png\tx+\r1\nimg1.png\ty\n")
    assert tsv_import(capsys, src, labels, tmp_path / "o")[0] == 0
    assert formulas_by_image(tmp_path / "o") == {"img0.png": "x + 1", "img1.png": "y"}


def test_a_200000_character_label_is_dropped_as_too_long_not_a_crash(tmp_path, capsys):
    src, labels = tsv_source(tmp_path, ["img0.png\t" + "x" * 200_000, "img1.png\ty"], 2)
    assert tsv_import(capsys, src, labels, tmp_path / "o")[0] == 0
    assert "formula too long (200000 tokens" in reasons_by_origin(tmp_path / "o")["labels.tsv:1"]
    assert formulas_by_image(tmp_path / "o") == {"img1.png": "y"}


def test_out_naming_an_existing_file_is_refused(tmp_path, capsys):
    src, labels = tsv_source(tmp_path, ["img0.png\tx"])
    (tmp_path / "o").write_text("not a folder")
    code, err = tsv_import(capsys, src, labels, tmp_path / "o", "--force")
    assert code == 2 and "is a file" in err and (tmp_path / "o").read_text() == "not a folder"


def test_an_unreadable_labels_file_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    src, labels = tsv_source(tmp_path, ["img0.png\tx"])
    real_read = Path.read_bytes

    def read_bytes(path):  # root reads anything: refuse as the file system would refuse a user
        if path == labels:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    code, err = tsv_import(capsys, src, labels, tmp_path / "o")
    assert code == 2 and f"cannot read {labels}: permission denied" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_an_unwritable_out_parent_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    src, labels = tsv_source(tmp_path, ["img0.png\tx"])
    parent = tmp_path / "readonly"
    parent.mkdir()
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args, dir=None, **kwargs):  # root writes anywhere: refuse as a read-only folder would
        if Path(dir) == parent:
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkdtemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    code, err = tsv_import(capsys, src, labels, parent / "out")
    assert code == 2 and f"{parent} is not writable (Permission denied)" in err
    assert list(parent.iterdir()) == []


# ---- rows that were wrong or lost without a word ------------------------------------------------------


def test_a_quoted_label_across_two_lines_arrives_whole(tmp_path, capsys):
    src, labels = tsv_source(tmp_path, ['img0.png\t"\\frac{a}{b}', '+ c"', "img1.png\ty"], 2)
    assert tsv_import(capsys, src, labels, tmp_path / "o")[0] == 0
    assert formulas_by_image(tmp_path / "o") == {"img0.png": "\\frac { a } { b } + c", "img1.png": "y"}
    assert manifest_of(tmp_path / "o")["dropped"] == []


def test_one_image_in_train_and_test_is_kept_once_with_a_warning(tmp_path, capsys, caplog):
    src, labels = tsv_source(tmp_path, ["img0.png\tx\ttrain", "img1.png\ty\ttrain", "./img0\tx\ttest"], 2)
    with caplog.at_level(logging.WARNING):
        assert tsv_import(capsys, src, labels, tmp_path / "o")[0] == 0
    assert "images named by more than one row: 1 (first: labels.tsv:1, labels.tsv:3)" in caplog.text
    assert formulas_by_image(tmp_path / "o") == {"img0.png": "x", "img1.png": "y"}
    assert (tmp_path / "o" / "test.lst").read_text() == ""
    reason = reasons_by_origin(tmp_path / "o")["labels.tsv:3"]
    assert "labels.tsv:1 (kept in train)" in reason and "two splits" in reason


def test_one_image_with_two_labels_keeps_neither(tmp_path, capsys):
    src, labels = tsv_source(tmp_path, ["img0.png\tx", "img1.png\ty", "img0.png\tz", "img0.png\tx + 0"], 2)
    assert tsv_import(capsys, src, labels, tmp_path / "o")[0] == 0
    assert formulas_by_image(tmp_path / "o") == {"img1.png": "y"}
    reasons = reasons_by_origin(tmp_path / "o")
    assert "another label at labels.tsv:3, labels.tsv:4" in reasons["labels.tsv:1"]
    assert "another label at labels.tsv:1, labels.tsv:4" in reasons["labels.tsv:3"]


def test_the_same_row_twice_keeps_one(tmp_path, capsys):
    src, labels = tsv_source(tmp_path, ["img0.png\tx+1", "img0\tx + 1"], 1)
    assert tsv_import(capsys, src, labels, tmp_path / "o")[0] == 0
    assert formulas_by_image(tmp_path / "o") == {"img0.png": "x + 1"}
    assert "repeats labels.tsv:1" in reasons_by_origin(tmp_path / "o")["labels.tsv:2"]


def _im2latex_source(root: Path, lists: dict[str, str]) -> Path:
    for i, stem in enumerate(("a", "b")):
        save(picture(i), root / "images_processed" / f"{stem}.png")
    (root / "formulas.norm.lst").write_text("x + 1\ny\n")
    for split in ("train", "validate", "test"):
        (root / f"{split}_filter.lst").write_text(lists.get(split, ""))
    return root


def test_an_image_in_two_im2latex_lists_is_kept_in_the_first(tmp_path, capsys):
    src = _im2latex_source(tmp_path / "src", {"train": "a.png 0\nb.png 1\n", "test": "a.png 0\n"})
    assert cli(capsys, "import", "--format", "im2latex", "--src", src, "--out", tmp_path / "o")[0] == 0
    assert formulas_by_image(tmp_path / "o") == {"a.png": "x + 1", "b.png": "y"}
    assert (tmp_path / "o" / "test.lst").read_text() == ""
    assert "train_filter.lst:1 (kept in train)" in reasons_by_origin(tmp_path / "o")["test_filter.lst:1"]


def test_a_name_in_nfc_finds_a_file_stored_in_nfd(tmp_path, capsys):
    nfd = unicodedata.normalize("NFD", "é")
    save(picture(), tmp_path / "src" / f"{nfd}.png")  # as macOS stores it
    (tmp_path / "labels.tsv").write_text(f"{unicodedata.normalize('NFC', 'é')}.png\tx\n", encoding="utf-8")
    assert tsv_import(capsys, tmp_path / "src", tmp_path / "labels.tsv", tmp_path / "o")[0] == 0
    assert manifest_of(tmp_path / "o")["counts"]["train"] == 1


def test_absolute_relative_and_symlinked_paths_inside_src_find_their_image(tmp_path, capsys):
    src, labels = tsv_source(tmp_path, [], 3)
    save(picture(5), tmp_path / "elsewhere" / "deep.png")
    (src / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    rows = [f"{src.resolve() / 'img0.png'}\ta", "../src/img1.png\tb", "src/img2.png\tc", "linked/deep.png\td"]
    labels.write_text("".join(r + "\n" for r in rows))
    before = tree_snapshot(tmp_path / "elsewhere")
    assert tsv_import(capsys, src, labels, tmp_path / "o")[0] == 0  # src/img2.png: beside labels.tsv
    assert formulas_by_image(tmp_path / "o") == {"img0.png": "a", "img1.png": "b", "img2.png": "c",
                                                 "linked__deep.png": "d"}  # fmt: skip
    assert tree_snapshot(tmp_path / "elsewhere") == before


def test_a_link_to_a_folder_inside_src_and_a_link_loop_find_one_image_once(tmp_path, capsys):
    src = tmp_path / "src"
    save(picture(), src / "real" / "r.png")
    (src / "a_alias").symlink_to(src / "real", target_is_directory=True)  # walked before real/
    (src / "real" / "loop").symlink_to(src, target_is_directory=True)
    (tmp_path / "labels.tsv").write_text("real/r.png\tx\na_alias/r\tx\n")
    assert tsv_import(capsys, src, tmp_path / "labels.tsv", tmp_path / "o")[0] == 0
    assert formulas_by_image(tmp_path / "o") == {"real__r.png": "x"}
    assert reasons_by_origin(tmp_path / "o") == {
        "labels.tsv:2": "repeats labels.tsv:1 (the same image and label; that row is kept)"
    }


def test_a_path_outside_src_is_named_as_such(tmp_path, capsys):
    src, labels = tsv_source(tmp_path, ["img0.png\tx"], 1)
    save(picture(), tmp_path / "other" / "z.png")
    labels.write_text(f"img0.png\tx\n{tmp_path / 'other' / 'z.png'}\ty\n")
    assert tsv_import(capsys, src, labels, tmp_path / "o")[0] == 0
    assert "lies outside --src" in reasons_by_origin(tmp_path / "o")["labels.tsv:2"]


# ---- messages that blamed the wrong thing ------------------------------------------------------------


def test_a_utf16_labels_file_imports(tmp_path, capsys):
    src, labels = tsv_source(tmp_path, [], 2)
    labels.write_bytes("image\tlatex\r\nimg0.png\tx\r\nimg1.png\t\\alpha\r\n".encode("utf-16"))
    assert tsv_import(capsys, src, labels, tmp_path / "o")[0] == 0
    assert formulas_by_image(tmp_path / "o") == {"img0.png": "x", "img1.png": "\\alpha"}


def test_src_naming_a_file_says_so(tmp_path, capsys):
    src, labels = tsv_source(tmp_path, ["img0.png\tx"])
    code, err = tsv_import(capsys, labels, labels, tmp_path / "o")
    assert code == 2 and "is a file" in err and "--labels" in err and "does not exist" not in err


# (flag, its values, the library's option, a value the library refuses): each would otherwise drop
# every item ("no ink", "too long", ...) or be changed quietly (downsample 0 acted as 1)
OUT_OF_RANGE = [
    ("--margin", ["-1"], "margin", -1),
    ("--max-tokens", ["-5"], "max_tokens", 0),  # the CLI's 0 is the library's None: no limit
    ("--ink-threshold", ["-1"], "ink_threshold", 0),
    ("--ink-threshold", ["256"], "ink_threshold", 256),
    ("--max-pixels", ["0"], "max_pixels", 0),
    ("--downsample", ["0"], "downsample", 0),
    ("--split-ratio", ["nan", "1", "1"], "split_ratio", (float("nan"), 1, 1)),
    ("--split-ratio", ["0", "0", "0"], "split_ratio", (0, 0, 0)),
    ("--min-count", ["0"], "min_count", 0),
    ("--workers", ["-2"], "workers", -2),
]


@pytest.mark.parametrize("flag, values, option, value", OUT_OF_RANGE)
def test_out_of_range_options_are_refused_by_the_cli_and_the_library(
    tmp_path, capsys, flag, values, option, value
):
    src, labels = tsv_source(tmp_path, ["img0.png\tx"], 1)
    code, err = cli(capsys, "import", "--format", "tsv", "--src", src, "--labels", labels,
                    "--out", tmp_path / "o", flag, *values)  # fmt: skip
    assert code == 2 and f"argument {flag}:" in err
    with pytest.raises(ValueError, match=option):
        import_dataset("tsv", src, tmp_path / "o", labels=labels, **{option: value})
    assert not (tmp_path / "o").exists()


def test_an_im2latex_list_with_a_third_column_says_which_format_it_looks_like(tmp_path, capsys):
    src = _im2latex_source(tmp_path / "src", {"train": "a.png 0 basic\nb.png 1 basic\n"})
    code, err = cli(capsys, "import", "--format", "im2latex", "--src", src, "--out", tmp_path / "o")
    assert code == 2 and "3 fields where 2 are expected" in err and "im2latex-raw" in err
    assert not (tmp_path / "o").exists()


def test_no_import_touches_the_source(tmp_path, capsys):
    """Every case above with its own source; here the plainest one, checked byte for byte and by mtime."""
    src, labels = tsv_source(tmp_path, ["img0.png\tx", "img1.png\ty", "img9.png\tz"], 2)
    os.symlink(src / "img1.png", src / "link.png")
    before = tree_snapshot(tmp_path)
    assert tsv_import(capsys, src, labels, tmp_path / "o")[0] == 0
    assert {k: v for k, v in tree_snapshot(tmp_path).items() if not k.startswith("o")} == before
