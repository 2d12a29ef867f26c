"""`--format course`: the course team's layout, Mathpix outputs beside handwritten crops.

    src/{train,dev,test}/<id>.png|jpg      the images
    src/{train,dev}/<id>.txt               Mathpix output: `$...$`, sometimes `error mathpix`
A split folder without any .txt (the course's test/) is imported without formulas.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from data_prep.buckets import DEFAULT_BUCKETS
from data_prep.importers._common import (
    SPLIT_ALIASES,
    image_files,
    require_dir,
    shared_stem_reason,
    shared_stems,
)
from data_prep.importers.label_file import is_text, read_text
from data_prep.items import RawItem

DEFAULTS: dict = {"buckets": DEFAULT_BUCKETS}  # the course trained on its own bucket list


def iter_items(src: Path) -> Iterator[RawItem]:
    src = require_dir(src, "course")
    folders = [p for p in sorted(src.iterdir()) if p.is_dir() and p.name.lower() in SPLIT_ALIASES]
    if not folders:
        raise FileNotFoundError(
            f"{src} has no split folders (train/, dev/, test/): is --format course right?"
        )
    for folder in folders:
        yield from _split_items(folder, SPLIT_ALIASES[folder.name.lower()])


def _split_items(folder: Path, split: str) -> Iterator[RawItem]:
    images = image_files(folder)
    shared = shared_stems(folder)
    # Mathpix outputs from Windows tools may be named .TXT: match labels as loosely as images
    labels = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() == ".txt"}
    for stem, image in images.items():
        origin = f"{folder.name}/{image.name}"
        if not labels:
            yield RawItem(stem, split, image, origin=origin)
            continue
        text, error = _read_label(labels.get(stem, folder / f"{stem}.txt"))
        yield RawItem(stem, split, image, text, label_error=error, origin=origin)
    for stem, paths in shared.items():
        yield RawItem(
            stem, split, None, label_error=shared_stem_reason(paths), origin=f"{folder.name}/{stem}"
        )
    for stem, label in labels.items():
        if stem not in images and stem not in shared:
            yield RawItem(stem, split, None, label_error=f"no image for label {label.name}",
                          origin=f"{folder.name}/{label.name}")  # fmt: skip


def _read_label(path: Path) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason): UTF-8 with or without a BOM, or UTF-16 (Windows Notepad's
    "Unicode"). One unreadable label costs its own item only."""
    if not path.is_file():
        return None, f"missing label file {path.name}"
    try:
        text, encoding = read_text(path)
    except OSError as e:
        return None, f"unreadable label file {path.name}: {e}"
    if not is_text(text):
        return None, f"label {path.name} is not {encoding} text"
    return text, None
