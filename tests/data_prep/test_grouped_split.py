"""Ratio splits grouped by formula (the default) versus row by row, and the manifest's split_overlap."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from data_prep.importers import import_dataset
from data_prep.manifest import load_manifest
from tests.data_prep._ingest_fixtures import formula_image, save

# formula -> rows: several writers per formula, as in CROHME (31 rows, 12 formulas)
ROWS = {
    "x+1": 4, "y-2": 1, "a+b": 3, r"\frac{a}{b}": 2, r"\sqrt{x}": 4, "z^{3}": 1,
    r"\alpha": 3, "c=d": 2, r"x_{1}": 4, "p/q": 1, "m n": 3, r"\beta+1": 3,
}  # fmt: skip
SPLITS = ("train", "validate", "test")
RATIO = (0.6, 0.2, 0.2)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, Path]:
    """(image folder, labels.tsv): one rendered image per formula, copied to each of its rows."""
    root = tmp_path_factory.mktemp("grouped")
    lines = []
    for k, (formula, n) in enumerate(ROWS.items()):
        first = save(formula_image(formula), root / "src" / f"f{k}-0.png")
        for r in range(n):
            name = f"f{k}-{r}.png"
            if r:
                (root / "src" / name).write_bytes(first.read_bytes())
            lines.append(f"{name}\t{formula}\n")
    (root / "labels.tsv").write_text("".join(lines), encoding="utf-8")
    return root / "src", root / "labels.tsv"


def _splits(out: Path) -> dict[str, list[str]]:
    """split -> the formula of each of its rows."""
    formulas = (out / "formulas.norm.lst").read_text(encoding="utf-8").splitlines()
    return {
        s: [formulas[int(line.split()[1])] for line in (out / f"{s}.lst").read_text().splitlines()]
        for s in SPLITS
    }


def _import(source, out: Path, **options) -> Path:
    src, labels = source
    options = {"split_ratio": RATIO, **options}
    return import_dataset("tsv", src, out, labels=labels, workers=0, **options)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_split_puts_each_formula_in_one_split(source, tmp_path, seed):
    out = _import(source, tmp_path / "out", split_seed=seed)
    rows = _splits(out)
    homes = {f: {s for s in SPLITS if f in rows[s]} for s_rows in rows.values() for f in s_rows}
    assert all(len(h) == 1 for h in homes.values()), homes
    overlap = load_manifest(out)["split_overlap"]
    for split in ("validate", "test"):
        assert overlap[split] == {"formulas": len(set(rows[split])), "also_in_train": 0}
    assert overlap["train"] == {"formulas": len(set(rows["train"]))}
    # whole formulas move, so a split misses its share by less than one formula's rows
    total, biggest = sum(ROWS.values()), max(ROWS.values())
    for split, share in zip(SPLITS, RATIO, strict=True):
        assert abs(len(rows[split]) - share * total) <= biggest, (split, len(rows[split]))


def test_ungrouped_split_reports_the_overlap_it_makes(source, tmp_path):
    shared_somewhere = False
    for seed in range(3):
        out = _import(source, tmp_path / f"out{seed}", split_seed=seed, group_splits=False)
        rows = _splits(out)
        overlap = load_manifest(out)["split_overlap"]
        train = set(rows["train"])
        for split in ("validate", "test"):
            shared = len(set(rows[split]) & train)
            assert overlap[split] == {"formulas": len(set(rows[split])), "also_in_train": shared}
            shared_somewhere |= shared > 0
        # row by row, the sizes are the ratio's own (31 rows: 19 / 6 / 6)
        assert [len(rows[s]) for s in SPLITS] == [19, 6, 6]
    assert shared_somewhere, "31 rows of 12 formulas split row by row never shared one: the check is moot"


def test_grouping_sees_the_canonical_formula_not_its_spelling(tmp_path):
    spellings = ["x^2", "x^{2}", "x^{{2}}", "{x}^2", "x ^ 2"]
    others = [f"y_{{{i}}}" for i in range(15)]
    image = save(formula_image("x^2"), tmp_path / "src" / "x0.png")
    lines = []
    for i, text in enumerate(spellings):
        (tmp_path / "src" / f"x{i}.png").write_bytes(image.read_bytes())
        lines.append(f"x{i}.png\t{text}\n")
    for i, text in enumerate(others):
        save(formula_image(text), tmp_path / "src" / f"y{i}.png")
        lines.append(f"y{i}.png\t{text}\n")
    (tmp_path / "labels.tsv").write_text("".join(lines), encoding="utf-8")
    src, labels = tmp_path / "src", tmp_path / "labels.tsv"
    for seed in range(4):
        out = import_dataset(
            "tsv", src, tmp_path / f"out{seed}", labels=labels, split_ratio=(0.5, 0.25, 0.25),
            split_seed=seed, canonical=True, workers=0,
        )  # fmt: skip
        rows = _splits(out)
        where = Counter(s for s in SPLITS for f in rows[s] if f == "x ^ { 2 }")
        assert len(where) == 1 and sum(where.values()) == len(spellings), where


def test_a_split_without_a_share_gets_no_row_and_shares_sum_to_the_rows(source, tmp_path):
    # 31 rows at 25:37:0 are 12.5 and 18.5 rows: rounding each share alone (to even) gave 12 + 18 and sent
    # the leftover row to test, which would put a training-year formula into a held-out test year
    out = _import(source, tmp_path / "out", group_splits=False, split_ratio=(25, 37, 0))
    assert {s: len(r) for s, r in _splits(out).items()} == {"train": 13, "validate": 18, "test": 0}


def test_few_large_groups_still_fill_every_split_with_a_share(source, tmp_path):
    out = _import(source, tmp_path / "out", split_ratio=(0.4, 0.3, 0.3))
    assert all(_splits(out)[s] for s in SPLITS)
