"""`--format im2latex`: the processed im2latex-100k layout.

src/formulas.norm.lst                       one space-tokenised formula per line
src/{train,validate,test}_filter.lst        `<image>.png <0-based formula line>`
src/images_processed/                       the images
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from data_prep.importers._common import first_existing, image_files, list_rows, read_lines, require_dir
from data_prep.items import SPLITS, RawItem

# The source's split lists are already filtered (length, multi-line kept): its counts are the contract.
DEFAULTS = {"keep_multiline": True, "max_tokens": None}
_OTHER_FORMAT = "--format im2latex-raw reads lists of `<formula line> <image> <render type>`"


def iter_items(src: Path) -> Iterator[RawItem]:
    src = require_dir(src, "im2latex")
    formulas = read_lines(
        first_existing(src, ("formulas.norm.lst", "im2latex_formulas.norm.lst"), "formulas")
    )
    image_dir = first_existing(
        src, ("images_processed", "formula_images_processed", "images"), "image folder"
    )
    images = image_files(image_dir)
    listed: set[str] = set()
    for split in SPLITS:
        names = (f"{split}_filter.lst", f"{split}.lst", f"im2latex_{split}_filter.lst")
        list_file = first_existing(src, names, f"{split} list")
        for lineno, parts, problem in list_rows(list_file, _line_problem, _OTHER_FORMAT):
            origin = f"{list_file.name}:{lineno}"
            if problem:
                yield RawItem(origin, split, None, label_error=problem, origin=origin)
                continue
            stem = Path(parts[0]).stem
            listed.add(stem)
            exact = image_dir / parts[0]
            image = exact if exact.is_file() else images.get(stem, exact)
            yield _item(stem, split, image, formulas, int(parts[1]), origin)
    for stem, path in images.items():
        if stem not in listed:
            yield RawItem(stem, None, path, label_error="image not in any split list", origin=path.name)


def _item(stem: str, split: str, image: Path, formulas: list[str | None], index: int, origin: str) -> RawItem:
    if index >= len(formulas):
        error = f"formula line {index} beyond the file's {len(formulas)} lines"
        return RawItem(stem, split, image, label_error=error, origin=origin)
    if formulas[index] is None:
        return RawItem(stem, split, image, label_error=f"formula line {index} is not UTF-8", origin=origin)
    return RawItem(stem, split, image, formulas[index], pretokenized=True, origin=origin)


def _line_problem(parts: list[str]) -> str | None:
    if len(parts) != 2:
        return f"{len(parts)} fields where 2 are expected (`<image> <formula line>`)"
    return None if parts[1].isdigit() else f"formula line {parts[1]!r} is not a number"
