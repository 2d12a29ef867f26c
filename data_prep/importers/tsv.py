"""`--format tsv --src DIR --labels FILE.tsv`: any folder of images plus `filename<TAB>latex[<TAB>split]`.

The filename is a path relative to DIR, subfolders included, with or without its extension
(`train/c1/x.png`, `train/c1/x`); a bare stem also finds the one image of that stem anywhere below DIR.
Whitespace around fields is trimmed. A header line, quoted fields (csv quoting, tabs inside quotes) and
CRLF line ends are tolerated. Without a split column the pipeline splits by seed and ratio.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from data_prep.importers._common import (
    IMAGE_SUFFIXES,
    SPLIT_ALIASES,
    read_lines,
    read_raw_lines,
    require_dir,
    shared_stem_reason,
)
from data_prep.items import RawItem

DEFAULTS: dict = {}
_HEADER_WORDS = {
    "filename",
    "file",
    "image",
    "image_name",
    "name",
    "path",
    "latex",
    "formula",
    "label",
    "split",
}


def iter_items(src: Path, labels: Path | str | None = None) -> Iterator[RawItem]:
    src = require_dir(src, "tsv images")
    labels_path = _labels_path(src, labels)
    tree = _ImageTree(src)
    used: set[Path] = set()
    lines = zip(read_lines(labels_path), read_raw_lines(labels_path), strict=True)
    for lineno, (line, raw) in enumerate(lines, 1):
        origin = f"{labels_path.name}:{lineno}"
        if line is None:
            name = raw.split(b"\t")[0].strip().decode("utf-8", "replace")
            image, _ = tree.find(name)
            used.update([image] if image is not None else [])
            error = f"line {lineno} of {labels_path.name} is not UTF-8"
            yield RawItem(tree.item_id(name, image), None, image, label_error=error, origin=origin)
            continue
        if not line.strip() or (lineno == 1 and _is_header(line)):
            continue
        row = next(csv.reader([line], delimiter="\t", quotechar='"'))
        name = row[0].strip()
        split = SPLIT_ALIASES.get(row[2].strip().lower()) if len(row) > 2 and row[2].strip() else None
        image, problem = tree.find(name)
        if image is not None:
            used.add(image)
        formula = row[1].strip() if len(row) > 1 else None
        item = RawItem(tree.item_id(name, image), split, image if image is not None else src / name, formula,
                       origin=origin)  # fmt: skip
        if problem:
            item.formula, item.label_error = None, problem
        elif not formula:
            item.formula, item.label_error = None, "empty formula"
        elif len(row) > 2 and row[2].strip() and split is None:
            item.label_error = f"unknown split {row[2]!r} (use train, dev/validate or test)"
        yield item
    for path in tree.paths:
        if path not in used:
            rel = path.relative_to(src).as_posix()
            yield RawItem(tree.item_id(rel, path), None, path, origin=rel,
                          label_error=f"image has no row in {labels_path.name}")  # fmt: skip


class _ImageTree:
    """Every image under the source folder, subfolders included, found by a row's relative path with or
    without its extension (`train/c1/x.png`, `train/c1/x`) or, failing that, by a file stem that only one
    image in the tree has. Ids are the relative path without extension, `/` -> `__`: unique and stable."""

    def __init__(self, root: Path):
        self.root = root
        self.paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        self.by_rel: dict[str, Path] = {p.relative_to(root).as_posix(): p for p in self.paths}
        self.by_rel_stem: dict[str, list[Path]] = {}
        self.by_stem: dict[str, list[Path]] = {}
        for rel, path in self.by_rel.items():
            self.by_rel_stem.setdefault(rel[: -len(path.suffix)], []).append(path)
            self.by_stem.setdefault(path.stem, []).append(path)

    def find(self, name: str) -> tuple[Path | None, str | None]:
        """(the image a row names, None) or (None, why it cannot be used)."""
        rel = name.replace("\\", "/").strip()
        while rel.startswith("./"):
            rel = rel[2:]
        if rel in self.by_rel:
            return self.by_rel[rel], None
        stem = rel[: -len(Path(rel).suffix)] if Path(rel).suffix.lower() in IMAGE_SUFFIXES else rel
        for candidates in (self.by_rel_stem.get(stem), self.by_stem.get(stem) if "/" not in stem else None):
            if candidates and len(candidates) == 1:
                return candidates[0], None
            if candidates:
                return None, shared_stem_reason(candidates)
        return None, f"missing image file {name} (looked for it under {self.root}, with any image extension)"

    def item_id(self, name: str, image: Path | None) -> str:
        if image is not None:
            rel = image.relative_to(self.root).as_posix()
            return rel[: -len(image.suffix)].replace("/", "__")
        return Path(name.replace("\\", "/")).with_suffix("").as_posix().replace("/", "__") or "row"


def _labels_path(src: Path, labels: Path | str | None) -> Path:
    if labels is None:
        candidates = sorted(src.glob("*.tsv"))
        if len(candidates) != 1:
            raise FileNotFoundError(
                f"--format tsv needs --labels FILE.tsv (found {len(candidates)} .tsv in {src})"
            )
        return candidates[0]
    for path in (Path(labels), src / labels):
        if path.is_file():
            return path
    raise FileNotFoundError(f"labels file {labels} not found (neither as given nor inside {src})")


def _is_header(line: str) -> bool:
    cells = [c.strip().strip('"').lower() for c in line.split("\t")]
    return any(c in _HEADER_WORDS for c in cells[:3]) and not Path(cells[0]).suffix
