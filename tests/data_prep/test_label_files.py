"""Label files as tools write them: encodings, BOMs, line ends, csv quoting, fields across lines, and rows
with a field too few or too many. A property test writes random valid and broken files."""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_prep.importers import import_dataset, tsv
from data_prep.importers.label_file import read_rows
from tests.data_prep._ingest_fixtures import save

COLUMNS = tsv.COLUMNS
N_IMAGES = 8
ENCODINGS = {  # name -> (BOM, codec)
    "utf-8": (b"", "utf-8"),
    "utf-8-bom": (codecs.BOM_UTF8, "utf-8"),
    "utf-16-le": (codecs.BOM_UTF16_LE, "utf-16-le"),
    "utf-16-be": (codecs.BOM_UTF16_BE, "utf-16-be"),
}


def ink_image(i: int) -> np.ndarray:
    """A small distinct picture with ink: enough for the pipeline, far cheaper than rendering LaTeX."""
    gray = np.full((24, 40 + 4 * i), 255, np.uint8)
    gray[8:16, 4 : 8 + 4 * i] = 0
    return gray


def image_folder(root, n: int):
    for i in range(n):
        save(ink_image(i), root / f"img{i}.png")
    return root


def write_labels(path, rows: list[str], line_end: str = "\n", encoding: str = "utf-8") -> None:
    bom, codec = ENCODINGS[encoding]
    path.write_bytes(bom + "".join(row + line_end for row in rows).encode(codec))


# ---- the property test -------------------------------------------------------------------------------


@dataclass
class Row:
    kind: str  # valid, or what is wrong with it
    cells: list[str]  # written as a spreadsheet writes them (quoted where needed)
    raw: str | None = None  # written as is instead: rows that no tool writes but people type

    @property
    def fields(self) -> list[str]:
        """What a valid row reads back as: a spreadsheet's empty padding cells past the third are trimmed."""
        return self.cells[:3] if len(self.cells) > 3 else self.cells


_LABEL_CHARS = st.sampled_from(list("ab x+1{}\\^_=\t\"'") + ["\n", "\r\n", "é", "α", "∑", ","])
_NAMES = st.integers(0, N_IMAGES - 1).map(lambda i: f"img{i}")
_SPLIT_OF = {"": None, "train": "train", "dev": "validate", "test": "test", "Test": "test"}
_SPLITS = st.sampled_from(sorted(_SPLIT_OF)[1:])


def _labels(line_end: str):
    """Labels with tabs, quotes, line breaks and non-ASCII. One holds at most one lone CR: a file with
    more lone CRs than LFs is read as an old Mac one, whose lines end in CR."""
    label = st.lists(_LABEL_CHARS, min_size=1, max_size=8).map("".join).filter(lambda s: s.strip())
    if line_end == "\r":  # an old Mac file's cells hold no line break of their own here
        return label.map(lambda s: s.replace("\r\n", " ").replace("\n", " "))
    return st.tuples(label, st.booleans()).map(lambda t: t[0] + "\r" + "y" if t[1] else t[0])


def _flat(label: str) -> str:
    """A label for a hand-typed broken row: one line, no quote of its own."""
    return label.replace('"', "").replace("\r", " ").replace("\n", " ")


@st.composite
def label_files(draw):
    """(rows, encoding, line end, quote every field)."""
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    line_end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    label = _labels(line_end)
    broken = ["too_few", "too_many", "text_after_quote"] + ["not_text"] * encoding.startswith("utf-8")
    kinds = ["valid"] * 4 + broken
    rows = []
    for kind in draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=10)):
        name, text = draw(_NAMES), draw(label)
        if kind == "valid":
            third = [draw(_SPLITS | st.just(""))] if draw(st.booleans()) else []
            rows.append(Row(kind, [name, text, *third] + [""] * draw(st.integers(0, 2))))
        elif kind == "too_few":
            rows.append(Row(kind, [name]))
        elif kind == "too_many":
            rows.append(Row(kind, [name, text, draw(_SPLITS), "surplus"]))
        elif kind == "text_after_quote":
            rows.append(Row(kind, [], raw=f'{name}\t"{_flat(text)}"x'))
        else:  # bytes that are not UTF-8, as a Latin-1 editor writes é
            rows.append(Row(kind, [name, text + "\udce9"]))
    if draw(st.booleans()):
        # last only: in the middle no reader can tell where an unclosed quote was meant to end
        rows.append(Row("unclosed", [], raw=f'{draw(_NAMES)}\t"{_flat(draw(label))}'))
    return rows, encoding, line_end, draw(st.booleans())


def _cell(value: str, quote_all: bool) -> str:
    if quote_all or any(c in value for c in '\t"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _encode(rows: list[Row], encoding: str, line_end: str, quote_all: bool) -> tuple[bytes, list[int]]:
    """The file's bytes and the line each row starts on."""
    bom, codec = ENCODINGS[encoding]
    data, text, starts = bytearray(bom), "", []
    breaker = "\r" if line_end == "\r" else "\n"
    for row in rows:
        starts.append(text.count(breaker) + 1)
        line = row.raw if row.raw is not None else "\t".join(_cell(c, quote_all) for c in row.cells)
        text += line + line_end
        data += (line + line_end).encode(codec, "surrogateescape")
    return bytes(data), starts


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("labels-property") / "images", N_IMAGES)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(label_files())
def test_every_valid_row_arrives_intact_and_every_broken_one_is_reported(image_dir, case):
    rows, encoding, line_end, quote_all = case
    data, starts = _encode(rows, encoding, line_end, quote_all)
    labels = image_dir.parent / "labels.tsv"
    labels.write_bytes(data)

    read = {r.line: r for r in read_rows(labels, 2, 3, COLUMNS)}
    assert sorted(read) == starts, "one result per row, at the line the row starts on"
    for row, line in zip(rows, starts, strict=True):
        got = read[line]
        if row.kind == "valid":
            assert got.error is None and got.fields == row.fields
        else:
            assert got.error is not None and got.error.startswith(f"line {line} of labels.tsv"), got

    items = {item.origin: item for item in tsv.iter_items(image_dir, labels)}
    for row, line in zip(rows, starts, strict=True):
        item = items[f"labels.tsv:{line}"]
        if row.kind == "valid":
            assert item.label_error is None
            assert item.formula.split() == row.fields[1].split()  # a cell's line break is LaTeX whitespace
            assert item.image == image_dir / f"{row.fields[0]}.png"
            assert item.split == _SPLIT_OF[row.fields[2] if len(row.fields) > 2 else ""]
        else:
            assert f"line {line} of labels.tsv" in item.label_error


# ---- formats, one example each -----------------------------------------------------------------------


def _import(tmp_path, rows, n_images, **write):
    src = image_folder(tmp_path / "src", n_images)
    write_labels(tmp_path / "labels.tsv", rows, **write)
    out = import_dataset("tsv", src, tmp_path / "out", labels=tmp_path / "labels.tsv", workers=0,
                         split_ratio=(1, 0, 0))  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    rows = [line.split() for line in (out / "train.lst").read_text().splitlines()]
    formulas = (out / "formulas.norm.lst").read_text().splitlines()
    return manifest, {name: formulas[int(i)] for name, i in rows}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"])
def test_every_encoding_and_line_end_imports_the_same(tmp_path, encoding, line_end):
    rows = ["image\tlatex", "img0.png\tx^{2}", 'img1\t"\\frac{a}{b}"', "img2.png\t\\alpha+1"]
    manifest, formulas = _import(tmp_path, rows, 3, line_end=line_end, encoding=encoding)
    assert manifest["dropped"] == []
    assert formulas == {"img0.png": "x ^ { 2 }", "img1.png": "\\frac { a } { b }", "img2.png": "\\alpha + 1"}


def test_utf16_without_a_bom_is_told_by_its_nul_bytes(tmp_path):
    src = image_folder(tmp_path / "src", 1)
    (tmp_path / "l.tsv").write_bytes("img0.png\tx+1\n".encode("utf-16-le"))
    out = import_dataset("tsv", src, tmp_path / "out", labels=tmp_path / "l.tsv", workers=0)
    assert (out / "formulas.norm.lst").read_text() == "x + 1\n"


def test_a_spreadsheet_export_with_cells_across_lines_imports_whole(tmp_path):
    """The CROHME case: CRLF ends, LaTeX cells quoted over two lines (the tool wrapped them), a header.
    It once crashed with `PosixPath('.') has an empty name`; every row must import, none dropped."""
    src = image_folder(tmp_path / "src", N_IMAGES)
    rows = ["filename\tlatex"]
    for i in range(N_IMAGES):
        rows.append(f'img{i}.png\t"\\frac{{a_{i}}}{{b}}\r\n+ c_{i}"' if i % 2 else f"img{i}.png\tx_{i}")
    write_labels(tmp_path / "labels.tsv", rows, line_end="\r\n")
    out = import_dataset("tsv", src, tmp_path / "out", labels=tmp_path / "labels.tsv", workers=0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dropped"] == [] and sum(manifest["counts"].values()) == N_IMAGES
    formulas = set((out / "formulas.norm.lst").read_text().splitlines())
    assert "\\frac { a _ 1 } { b } + c _ 1" in formulas, "both lines of the cell, joined by a space"


def test_an_old_mac_file_keeps_a_line_break_inside_a_cell(tmp_path):
    rows = ["img0.png\tx", 'img1.png\t"a\nb"', "img2.png\tz"]
    manifest, formulas = _import(tmp_path, rows, 3, line_end="\r")
    assert manifest["dropped"] == [] and formulas == {"img0.png": "x", "img1.png": "a b", "img2.png": "z"}


def test_a_stray_cr_inside_a_row_reads_as_a_space(tmp_path):
    manifest, formulas = _import(tmp_path, ["img0.png\tx+\r1", "img1.png\ty"], 2)
    assert manifest["dropped"] == [] and formulas == {"img0.png": "x + 1", "img1.png": "y"}


def test_rows_with_a_field_too_few_or_too_many_are_dropped_with_their_line(tmp_path):
    rows = ["img0.png\tx", "img1.png", "img2.png\ty\ttrain\tsurplus", "img3.png\tz\ttrain\t\t", "",
            'img4.png\t"q"r', "img5.png\tw"]  # fmt: skip
    manifest, formulas = _import(tmp_path, rows, 6)
    reasons = {d["origin"]: d["reason"] for d in manifest["dropped"] if d["origin"].startswith("labels")}
    assert reasons.keys() == {"labels.tsv:2", "labels.tsv:3", "labels.tsv:6"}
    assert reasons["labels.tsv:2"].startswith("line 2 of labels.tsv (UTF-8): 1 field where 2 or 3")
    assert reasons["labels.tsv:3"].startswith("line 3 of labels.tsv (UTF-8): 4 fields where 2 or 3")
    assert "text follows a closing quote" in reasons["labels.tsv:6"]
    # a spreadsheet's empty trailing cells are no extra field
    assert formulas == {"img0.png": "x", "img3.png": "z", "img5.png": "w"}


def test_a_quote_never_closed_costs_its_own_row_only(tmp_path):
    manifest, formulas = _import(tmp_path, ["img0.png\tx", 'img1.png\t"y', "img2.png\tz"], 3)
    [dropped] = [d for d in manifest["dropped"] if d["origin"] == "labels.tsv:2"]
    assert dropped["id"] == "img1" and "never closed" in dropped["reason"]
    assert formulas == {"img0.png": "x", "img2.png": "z"}


def test_a_course_label_saved_by_notepad_as_utf16_imports(tmp_path):
    """Mathpix outputs edited on Windows: Notepad's "Unicode" is UTF-16 with a BOM."""
    save(ink_image(0), tmp_path / "src" / "train" / "a.png")
    save(ink_image(1), tmp_path / "src" / "train" / "b.png")
    (tmp_path / "src" / "train" / "a.txt").write_bytes("$x^{2}$\r\n".encode("utf-16"))
    (tmp_path / "src" / "train" / "b.txt").write_bytes("$\\text{é}$".encode("latin-1"))
    out = import_dataset("course", tmp_path / "src", tmp_path / "out", workers=0)
    assert (out / "formulas.norm.lst").read_text() == "x ^ { 2 }\n"
    [dropped] = json.loads((out / "manifest.json").read_text())["dropped"]
    assert dropped["id"] == "b" and dropped["reason"] == "label b.txt is not UTF-8 text"
