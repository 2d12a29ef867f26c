"""`--format im2latex-raw`: raw im2latex page renders (im2markup's data/sample layout).

src/formulas.lst                    raw LaTeX, one per line (some empty)
src/{train,validate,test}.lst       `<0-based formula line> <image name without .png> <render type>`
src/images/                         full-page renders: the pipeline crops each to its formula
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from data_prep.importers._common import first_existing, image_files, list_rows, read_lines, require_dir
from data_prep.items import SPLITS, RawItem

# Page renders are at full resolution: im2markup halves the crops (a formula 1130 px wide otherwise pads
# to a 1600x1600 bucket). `--downsample 1` keeps full resolution.
DEFAULTS = {"keep_multiline": True, "max_tokens": None, "downsample": 2}
_OTHER_FORMAT = "--format im2latex reads lists of `<image> <formula line>`"


def iter_items(src: Path) -> Iterator[RawItem]:
    src = require_dir(src, "im2latex-raw")
    formulas = read_lines(first_existing(src, ("formulas.lst", "im2latex_formulas.lst"), "formulas.lst"))
    image_dir = first_existing(src, ("images", "formula_images"), "image folder")
    images = image_files(image_dir)
    listed: set[str] = set()
    for split in SPLITS:
        list_file = first_existing(src, (f"{split}.lst", f"im2latex_{split}.lst"), f"{split} list")
        for lineno, parts, problem in list_rows(list_file, _line_problem, _OTHER_FORMAT):
            origin = f"{list_file.name}:{lineno}"
            if problem:
                yield RawItem(origin, split, None, label_error=problem, origin=origin)
                continue
            index, stem = int(parts[0]), Path(parts[1]).stem
            listed.add(stem)
            exact = image_dir / f"{stem}.png"  # the lists name images without their extension
            image = exact if exact.is_file() else images.get(stem, exact)
            if index >= len(formulas):
                error = f"formula line {index} beyond the file's {len(formulas)}"
            elif formulas[index] is None:
                error = f"formula line {index} is not UTF-8"
            else:
                yield RawItem(stem, split, image, formulas[index], origin=origin)
                continue
            yield RawItem(stem, split, image, label_error=error, origin=origin)
    for stem, path in images.items():
        if stem not in listed:
            yield RawItem(stem, None, path, label_error="image not in any split list", origin=path.name)


def _line_problem(parts: list[str]) -> str | None:
    if not 2 <= len(parts) <= 3:
        return f"{len(parts)} fields where 2 or 3 are expected (`<formula line> <image> [<render type>]`)"
    return None if parts[0].isdigit() else f"formula line {parts[0]!r} is not a number"
