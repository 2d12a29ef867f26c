"""--format inkml: the real CROHME and MathWriting samples, unusable pen files, rendering, CLI errors."""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from core.paths import shared_data_dir
from data_prep.__main__ import main
from data_prep.importers import import_dataset
from data_prep.ink import InkOptions, InkRejected, render_traces
from data_prep.manifest import load_manifest
from tests.conftest import _shared

CROHME_ARCHIVE = "crohme-inkml.tar.xz"
CROHME_TRAIN_FILES, CROHME_TEST_FILES = 8_836, 671
MALFORMED = ("MfrDB0104", "MfrDB3088")  # truncated / invalid bytes in the archive itself

# "x+1" in the writer's own units: five strokes of about 10 units each
X_PLUS_1 = [
    [(0, 0), (10, 10)], [(10, 0), (0, 10)],
    [(15, 5), (25, 5)], [(20, 0), (20, 10)],
    [(30, 0), (30, 10)],
]  # fmt: skip


def _traces(strokes, factor=1.0, offset=0.0) -> list[np.ndarray]:
    return [np.asarray(s, dtype=np.float64) * factor + offset for s in strokes]


def _inkml(traces: list[str], truth: str | None = "x+1") -> str:
    annotation = f'<annotation type="truth">{truth}</annotation>' if truth is not None else ""
    body = "".join(f'<trace id="{i}">{t}</trace>' for i, t in enumerate(traces))
    return f'<ink xmlns="http://www.w3.org/2003/InkML">{annotation}{body}</ink>'


def _trace_text(stroke) -> str:
    return ", ".join(f"{x} {y}" for x, y in stroke)


GOOD_TRACES = [_trace_text(s) for s in X_PLUS_1]


def _lst(root: Path, split: str) -> list[tuple[str, str]]:
    """(image name, formula) per line of <split>.lst."""
    formulas = (root / "formulas.norm.lst").read_text(encoding="utf-8").splitlines()
    rows = [line.split() for line in (root / f"{split}.lst").read_text(encoding="utf-8").splitlines()]
    return [(name, formulas[int(i)]) for name, i in rows]


def _tree_bytes(root: Path) -> dict[str, tuple[str, int]]:
    return {
        p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def crohme_src(tmp_path_factory) -> Path:
    archive = shared_data_dir() / CROHME_ARCHIVE
    if not archive.is_file():
        pytest.skip(
            f"real data sample {archive} is absent (it sits in ../shared/data beside a developer's or CI's "
            "checkout; set IM2LATEX_SHARED_DATA to point elsewhere)"
        )
    dest = tmp_path_factory.mktemp("crohme-src")
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(dest, filter="data")
    return dest


@pytest.fixture(scope="session")
def crohme_import(crohme_src, tmp_path_factory) -> Path:
    """The import IMPORTED_DATASETS["crohme"] names, done once (~25 s on 2 cores)."""
    out = tmp_path_factory.mktemp("crohme-out") / "crohme"
    return import_dataset(
        "inkml", crohme_src, out, split_dirs="test=TestINKMLGT", split_ratio=(0.9, 0.1, 0), downsample=4
    )


@pytest.fixture(scope="session")
def mathwriting_excerpt() -> Path:
    return _shared("mathwriting-excerpt")


@pytest.mark.slow
def test_crohme_import_keeps_nearly_every_file_and_names_the_malformed_ones(crohme_import):
    manifest = load_manifest(crohme_import)
    counts = manifest["counts"]
    assert counts["train"] + counts["validate"] >= 0.99 * CROHME_TRAIN_FILES
    assert counts["test"] >= 0.99 * CROHME_TEST_FILES
    assert counts["train"] + counts["validate"] + counts["test"] + manifest["dropped_count"] == (
        CROHME_TRAIN_FILES + CROHME_TEST_FILES
    )
    malformed = {d["id"].rsplit("__", 1)[-1]: d["reason"] for d in manifest["dropped"]}
    for name in MALFORMED:
        assert malformed[name].startswith(("malformed InkML", "empty file")), malformed[name]
        assert f"{name}.inkml" in malformed[name]
    assert manifest["options"]["ink"] == asdict(InkOptions())  # predict renders pen input from this
    assert manifest["options"]["split_dirs"] == "test=TestINKMLGT"


@pytest.mark.slow
def test_crohme_splits_follow_the_folders_and_validation_shares_no_formula_with_train(crohme_import):
    manifest = load_manifest(crohme_import)
    train, validate, test = (_lst(crohme_import, s) for s in ("train", "validate", "test"))
    assert all(name.startswith("TestINKMLGT__") for name, _ in test)
    assert all(name.startswith("TrainINKML__") for name, _ in train + validate)
    train_formulas = {f for _, f in train}
    assert not {f for _, f in validate} & train_formulas
    assert manifest["split_overlap"]["validate"] == {
        "formulas": len({f for _, f in validate}),
        "also_in_train": 0,
    }
    # the test folder is not regrouped: its overlap is reported as found, and it is the real one
    test_formulas = {f for _, f in test}
    assert manifest["split_overlap"]["test"]["also_in_train"] == len(test_formulas & train_formulas) > 0
    # grouping moves whole formulas, so validation stays near its 10 % share
    assert abs(len(validate) - 0.1 * (len(train) + len(validate))) <= 0.01 * len(train)


@pytest.mark.slow
def test_crohme_vocabulary_is_the_size_handwriting_papers_report(crohme_import):
    vocab = json.loads((crohme_import / "vocab.json").read_text(encoding="utf-8"))
    symbols = len(vocab) - 4  # <PAD> <SOS> <EOS> <UNK>
    assert 95 <= symbols <= 130, f"{symbols} symbols: WAP-style CROHME setups report ~110"
    # spellings the canonical form removes never reach the vocabulary
    assert not {r"\lt", r"\gt", r"\to", "$", r"\limits", r"\mbox", r"\left(", r"\right)"} & set(vocab)


@pytest.mark.slow
def test_crohme_decimal_points_survive(crohme_import):
    # one-point traces (a decimal point, the dot of an i) in real test files: `i.M`, `Pa.s`, `Nu= 0.13...`
    kept = {name for name, _ in _lst(crohme_import, "test")}
    for stem in ("106_em_100", "115_em_151", "117_em_198"):
        assert f"TestINKMLGT__{stem}.png" in kept


def test_mathwriting_splits_from_folders_and_normalized_label(mathwriting_excerpt, tmp_path):
    out = import_dataset("inkml", mathwriting_excerpt, tmp_path / "mw", workers=0)
    manifest = load_manifest(out)
    assert manifest["counts"] == {"train": 4, "validate": 4, "test": 3}
    assert manifest["dropped_count"] == 0
    for split, folder in (("train", "train"), ("validate", "valid"), ("test", "test")):
        assert all(name.startswith(f"{folder}__") for name, _ in _lst(out, split))
    train = dict(_lst(out, "train"))
    assert train["train__00015681597577ca.png"] == r"g ( x ) = G ^ { \prime } ( x ) = 0"
    # the matrix: normalizedLabel writes `matrix`, the raw label `array`; multi-line is kept for ink
    assert r"\begin{matrix}" in train["train__059225965e1e5dd6.png"]
    raw = import_dataset("inkml", mathwriting_excerpt, tmp_path / "raw", workers=0, label_field="label")
    assert r"\begin{array}" in dict(_lst(raw, "train"))["train__059225965e1e5dd6.png"]
    assert load_manifest(raw)["options"]["ink"]["label_field"] == "label"


def test_reimport_gives_the_same_bytes_serial_or_pooled(mathwriting_excerpt, tmp_path):
    a = import_dataset("inkml", mathwriting_excerpt, tmp_path / "a", workers=0)
    b = import_dataset("inkml", mathwriting_excerpt, tmp_path / "b", workers=2)
    assert load_manifest(a)["content_hash"] == load_manifest(b)["content_hash"]
    names = [sorted(p.name for p in (root / "images").iterdir()) for root in (a, b)]
    assert names[0] == names[1] and len(names[0]) == 11


BAD_FILES = {  # stem -> (file text, what the manifest reason must say)
    "malformed": (_inkml(GOOD_TRACES)[:-20], "malformed InkML malformed.inkml"),
    "empty": ("", "empty file empty.inkml"),
    "notruth": (_inkml(GOOD_TRACES, truth=None), "no LaTeX annotation"),
    "notraces": (_inkml([]), "no traces in notraces.inkml"),
    "emptytraces": (_inkml(["", " "]), "no traces in emptytraces.inkml"),
    "onepoint": (_inkml(["1 1", "5 5", "9 9"]), "every trace is a single point"),
    "nonnumeric": (_inkml([*GOOD_TRACES[:4], "30 0, 30 ten"]), "non-numeric value"),
    "shortpoint": (_inkml([*GOOD_TRACES[:4], "30 0, 30"]), "fewer than 2 values"),
    "nan": (_inkml([*GOOD_TRACES[:4], "30 0, nan 10"]), "non-finite value"),
    "inf": (_inkml([*GOOD_TRACES[:4], "30 0, 30 -inf"]), "non-finite value"),
    "absurd": (_inkml([*GOOD_TRACES[:4], "30 0, 30 10, 10000000 10"]), "absurd coordinate range"),
    "badtruth": (_inkml(GOOD_TRACES, truth="x^"), "unreadable formula structure"),
    # an unknown declared encoding raises LookupError inside the XML parser, not a ParseError
    "badencoding": ('<?xml version="1.0" encoding="bogus"?>' + _inkml(GOOD_TRACES), "malformed InkML"),
    # a traceGroup's truth names one symbol (or "Segmentation"): never the expression's formula
    "symboltruth": (_inkml(GOOD_TRACES, truth=None).replace(
        "</ink>", '<traceGroup><annotation type="truth">Segmentation</annotation></traceGroup></ink>'),
        "no LaTeX annotation"),
}


def test_unusable_pen_files_are_dropped_with_their_reason(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.inkml").write_text(_inkml(GOOD_TRACES), encoding="utf-8")
    for stem, (text, _) in BAD_FILES.items():
        (src / f"{stem}.inkml").write_text(text, encoding="utf-8")
    before = _tree_bytes(src)
    out = import_dataset("inkml", src, tmp_path / "out", workers=0)
    manifest = load_manifest(out)
    reasons = {d["id"]: d["reason"] for d in manifest["dropped"]}
    assert set(reasons) == set(BAD_FILES)
    for stem, (_, expected) in BAD_FILES.items():
        assert expected in reasons[stem], (stem, reasons[stem])
    assert sum(manifest["counts"].values()) == 1
    assert _tree_bytes(src) == before


def test_a_one_point_trace_is_drawn_as_a_dot():
    # "1.5" without the 5: a bar, the decimal point, another bar
    strokes = _traces([[(0, 0), (0, 10)], [(5, 10)], [(10, 0), (10, 10)]])
    options = InkOptions()
    image = render_traces(strokes, options)
    without = render_traces([strokes[0], strokes[2]], options)
    scale = options.symbol_px / 10  # the median stroke extent is 10 units
    pad = int(np.ceil(options.stroke_px)) + 1
    row, col = round(10 * scale) + pad, round(5 * scale) + pad
    assert image[row - 1 : row + 2, col - 1 : col + 2].min() == 0
    assert without[row - 1 : row + 2, col - 1 : col + 2].min() == 255  # the dot, not a stroke, is ink there


@pytest.mark.parametrize("factor, offset", [(1000, 0), (0.001, 0), (1, -5000), (2500, 1e6)])
def test_another_devices_units_render_the_same_size(factor, offset):
    # HAMEX writes ~1 unit per expression, KAIST ~2,500: the median stroke fixes the scale, not the units
    reference = render_traces(_traces(X_PLUS_1), InkOptions()).shape
    scaled = render_traces(_traces(X_PLUS_1, factor, offset), InkOptions()).shape
    assert abs(scaled[0] - reference[0]) <= 1 and abs(scaled[1] - reference[1]) <= 1


def test_render_refuses_what_it_cannot_draw():
    with pytest.raises(InkRejected, match="no traces"):
        render_traces([], InkOptions())
    with pytest.raises(InkRejected, match="single point"):
        render_traces(_traces([[(1, 1)], [(2, 2), (2, 2)]]), InkOptions())


@pytest.fixture
def ink_src(tmp_path) -> Path:
    src = tmp_path / "src"
    (src / "TrainINKML").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "TrainINKML" / "a.inkml").write_text(_inkml(GOOD_TRACES), encoding="utf-8")
    return src


def test_a_split_folder_may_be_spelled_with_dots_and_slashes(ink_src, tmp_path):
    (ink_src / "TestINKMLGT").mkdir()
    (ink_src / "TestINKMLGT" / "t.inkml").write_text(_inkml(GOOD_TRACES, "y-2"), encoding="utf-8")
    for k, spelling in enumerate(("./TestINKMLGT/", "TestINKMLGT/.")):
        out = import_dataset("inkml", ink_src, tmp_path / f"out{k}", split_dirs=f"test={spelling}",
                             split_ratio=(1, 0, 0), workers=0)  # fmt: skip
        assert [name for name, _ in _lst(out, "test")] == ["TestINKMLGT__t.png"], spelling


@pytest.mark.parametrize(
    "split_dirs, message",
    [
        ("testTestINKMLGT", "write SPLIT=FOLDER"),
        ("holdout=TrainINKML", "write SPLIT=FOLDER"),
        ("test=", "write SPLIT=FOLDER"),
        ("test=TestINKMLGT", "'TestINKMLGT' is not a folder inside"),
        ("test=.", "holds no .inkml file"),
        ("test=empty", "holds no .inkml file"),
    ],
)
def test_split_dirs_errors_are_clear_through_the_cli(ink_src, tmp_path, capsys, split_dirs, message):
    out = tmp_path / "out"
    argv = ["import", "--format", "inkml", "--src", str(ink_src), "--out", str(out)]
    argv += ["--split-dirs", split_dirs]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not out.exists()


@pytest.mark.parametrize(
    "flag", [["--ink-label", "truth"], ["--split-dirs", "test=x"], ["--ink-symbol-px", "20"]]
)
def test_ink_flags_with_another_format_are_refused(ink_src, tmp_path, capsys, flag):
    argv = ["import", "--format", "tsv", "--src", str(ink_src), "--out", str(tmp_path / "out"), *flag]
    assert main(argv) == 2
    assert f"{flag[0]} is for --format inkml only" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["tar.xz", "zip"])
def test_src_may_be_an_archive_which_is_read_like_its_folder(ink_src, tmp_path, kind):
    import shutil

    base = tmp_path / "packed"
    archive = Path(shutil.make_archive(str(base), "xztar" if kind == "tar.xz" else "zip", ink_src))
    before = archive.read_bytes()
    from_folder = import_dataset("inkml", ink_src, tmp_path / "a", workers=0)
    from_archive = import_dataset("inkml", archive, tmp_path / "b", workers=0)
    assert load_manifest(from_archive)["content_hash"] == load_manifest(from_folder)["content_hash"]
    assert load_manifest(from_archive)["source"] == str(archive)
    assert archive.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["src", "packed." + kind, "a", "b"])


def test_a_broken_archive_is_one_clear_error(tmp_path, capsys):
    archive = tmp_path / "crohme.tar.xz"
    archive.write_bytes(b"\xfd7zXZ\x00 truncated")
    argv = ["import", "--format", "inkml", "--src", str(archive), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "is not a readable archive" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crohme.tar.xz"]  # no unpacked folder left
