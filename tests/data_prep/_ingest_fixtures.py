"""Builders for small source folders (course, tsv, bad input) used by the data_prep ingest tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from data_prep.synth.render import render_mathtext

COURSE_GOOD = {
    "train": {"t1": r"$x^{2}+1$", "t2": r"$\frac{a}{b}$", "t3": r"$\sqrt{x}$", "t4": r"$\alpha+\beta$",
              "t5": r"$\angle ABC = 30^{\circ}$", "t6": r"$\left( x \right)$"},
    "dev": {"d1": r"$y=2x$", "d2": r"$\sin x$"},
}  # fmt: skip
COURSE_BAD = {  # id -> (split, label, the manifest reason it must get)
    "t7": ("train", "error mathpix", "error mathpix"),
    "t8": ("train", "$\\begin{array}{l} x=1 \\\\ y=2 \\end{array}$", "multi-line"),
    "t9": ("train", "$\\text{解} x=1$", "CJK"),
    "d3": ("dev", "error mathpix\n", "error mathpix"),
    "d4": ("dev", "$\\begin{array}{c}\na \\\\\nb\n\\end{array}$", "multi-line"),
    "d5": ("dev", "$\\text{答案} = 3$", "CJK"),
}
COURSE_TEST_IDS = ("q1", "q2", "q3")


def formula_image(latex: str, size: float = 20) -> np.ndarray:
    """A rendered formula with a white border, as a scanner crop would have."""
    return np.pad(render_mathtext(latex, "dejavusans", size), 15, constant_values=255)


def save(gray: np.ndarray, path: Path, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(gray).save(path, format=fmt)
    return path


def make_course(root: Path) -> Path:
    """train/, dev/ with Mathpix .txt labels (some bad), test/ with images only."""
    for split, items in COURSE_GOOD.items():
        for stem, label in items.items():
            save(formula_image(label.strip("$")), root / split / f"{stem}.png")
            (root / split / f"{stem}.txt").write_text(label, encoding="utf-8")
    for stem, (split, label, _) in COURSE_BAD.items():
        save(formula_image(r"x+y"), root / split / f"{stem}.jpg")
        (root / split / f"{stem}.txt").write_text(label, encoding="utf-8")
    for stem in COURSE_TEST_IDS:
        save(formula_image(r"a-b"), root / "test" / f"{stem}.png")
    return root


def make_bad_input_tsv(root: Path) -> tuple[Path, dict[str, str]]:
    """A tsv source holding one of every bad-input case; returns (labels file, id -> expected reason)."""
    img = root / "images"
    save(formula_image("x+1"), img / "good1.png")
    save(formula_image("y-2"), img / "good2.png")
    save(formula_image("z^{2}"), img / "good3.png")
    full = (img / "good1.png").read_bytes()
    (img / "truncated.png").write_bytes(full[: len(full) // 2])
    (img / "zero.png").write_bytes(b"")
    (img / "garbage.png").write_bytes(b"this is not an image at all" * 10)
    huge = np.full((3000, 3000), 255, np.uint8)
    huge[1500, 1000:2000] = 0
    save(huge, img / "huge.png")
    save(np.full((50, 80), 255, np.uint8), img / "blank.png")
    save(formula_image("q"), img / "badlabel.png")
    save(formula_image("w"), img / "emptylabel.png")
    rows = [
        b"filename\tlatex",
        b"good1.png\tx+1",
        b'good2.png\t"y-2"',
        b"good3.png\tz^{2}",
        b"truncated.png\tx",
        b"zero.png\tx",
        b"garbage.png\tx",
        b"huge.png\tx",
        b"blank.png\tx",
        b"badlabel.png\t\xe9t\xe9 \xff",
        b"emptylabel.png\t",
        b"missing.png\tx",
    ]
    labels = root / "labels.tsv"
    labels.write_bytes(b"\r\n".join(rows) + b"\r\n")
    expected = {
        "truncated": "unreadable image",
        "zero": "zero-byte",
        "garbage": "unreadable image",
        "huge": "decompression-bomb",
        "blank": "no ink",
        "badlabel": "not UTF-8",
        "emptylabel": "empty formula",
        "missing": "missing image file",
    }
    return labels, expected


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}
