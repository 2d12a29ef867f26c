"""`--format tsv --src DIR --labels FILE.tsv`: any folder of images plus `filename<TAB>latex[<TAB>split]`.

A header line, quoted fields (csv quoting, tabs inside quotes) and CRLF line ends are tolerated. Without
a split column the pipeline splits by seed and ratio.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from data_prep.importers._common import (
    IMAGE_SUFFIXES,
    SPLIT_ALIASES,
    image_files,
    read_lines,
    read_raw_lines,
    require_dir,
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
    images = image_files(src)  # by stem, for rows that name an image without its extension
    by_name = {p.name: p for p in sorted(src.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    seen: set[str] = set()
    lines = zip(read_lines(labels_path), read_raw_lines(labels_path), strict=True)
    for lineno, (line, raw) in enumerate(lines, 1):
        origin = f"{labels_path.name}:{lineno}"
        if line is None:
            name = raw.split(b"\t")[0].strip().decode("utf-8", "replace")
            seen.add(Path(name).stem)
            error = f"line {lineno} of {labels_path.name} is not UTF-8"
            yield RawItem(Path(name).stem, None, by_name.get(name), label_error=error, origin=origin)
            continue
        if not line.strip() or (lineno == 1 and _is_header(line)):
            continue
        row = next(csv.reader([line], delimiter="\t", quotechar='"'))
        name = row[0].strip()
        split = SPLIT_ALIASES.get(row[2].strip().lower()) if len(row) > 2 and row[2].strip() else None
        image = by_name.get(name) or images.get(Path(name).stem) or (src / name)
        seen.add(Path(name).stem)
        item = RawItem(Path(name).stem, split, image, row[1] if len(row) > 1 else None, origin=origin)
        if len(row) < 2 or not row[1].strip():
            item.formula, item.label_error = None, "empty formula"
        if len(row) > 2 and row[2].strip() and split is None:
            item.label_error = f"unknown split {row[2]!r} (use train, dev/validate or test)"
        yield item
    for name, path in by_name.items():
        if path.stem not in seen:
            yield RawItem(
                path.stem, None, path, label_error=f"image has no row in {labels_path.name}", origin=name
            )


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
