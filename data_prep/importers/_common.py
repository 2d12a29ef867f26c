"""Helpers the importers share: list-file lines, image lookup, split names, the input guards and the
rule for an image that several rows name."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from data_prep.formulas import strip_dollars
from data_prep.importers.label_file import is_text, read_text, split_lines
from data_prep.items import RawItem
from data_prep.tokenizer import tokenize

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "dev": "validate", "val": "validate", "valid": "validate",
    "validate": "validate", "validation": "validate",
    "test": "test", "testing": "test",
}  # fmt: skip


def read_lines(path: Path) -> list[str | None]:
    """A list file's lines without their ends, in any encoding and with any line end `label_file` reads
    (split on LF only: im2latex formulas hold \\x0c and friends, see `label_file.split_lines`); a line
    holding bytes that are not text comes back as None."""
    text, _ = read_text(path)
    return [line.rstrip("\r\n") if is_text(line) else None for line in split_lines(text)]


def list_rows(list_file: Path, problem_of, other_format: str):
    """(line number, fields, None) or (line number, fields, why it is unusable) for each non-blank line of
    a whitespace-separated split list. A list that holds lines but not one usable is the wrong format,
    not a list of bad rows: that raises ValueError, which names the format it may be instead."""
    usable, first_problem = 0, None
    for lineno, line in enumerate(read_lines(list_file), 1):
        parts = (line or "").split()
        if line is not None and not parts:
            continue
        problem = problem_of(parts) if line is not None else "not UTF-8 text"
        if problem:
            problem = f"line {lineno} of {list_file.name}: {problem}"
            first_problem = first_problem or f"{problem}: {line!r}"
        usable += problem is None
        yield lineno, parts, problem
    if first_problem and not usable:
        raise ValueError(
            f"no line of {list_file} is usable ({first_problem}); is --format right? {other_format}"
        )


def _images_by_stem(folder: Path) -> dict[str, list[Path]]:
    by_stem: dict[str, list[Path]] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                by_stem.setdefault(path.stem, []).append(path)
    return by_stem


def image_files(folder: Path) -> dict[str, Path]:
    """stem -> path for the images directly in `folder`. A stem that several images share (`a.png` and
    `a.jpg`) is left out: a label keyed by id cannot say which one it means (see `shared_stems`)."""
    return {stem: paths[0] for stem, paths in _images_by_stem(folder).items() if len(paths) == 1}


def shared_stems(folder: Path) -> dict[str, list[Path]]:
    """stem -> paths for the ids that several images in `folder` share."""
    return {stem: paths for stem, paths in _images_by_stem(folder).items() if len(paths) > 1}


def shared_stem_reason(paths: list[Path]) -> str:
    names = ", ".join(p.name for p in paths)
    return f"several images share the id {paths[0].stem!r} ({names}): keep one, rename the others"


def require_dir(src: Path, what: str) -> Path:
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} does not exist ({what}): check --src")
    return src


def first_existing(folder: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder} has no {what} (looked for {', '.join(names)}): is --format right?")


def check_inputs(src: Path, out: Path, inputs: dict[str, Path]) -> None:
    """Refuse a --src that is no folder, and any input that replacing --out (--force) would delete."""
    if src.exists() and not src.is_dir():
        hint = " (a labels file goes in --labels)" if src.suffix.lower() in {".tsv", ".csv", ".txt"} else ""
        raise NotADirectoryError(f"--src {src} is a file: --src takes the folder that holds the images{hint}")
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} does not exist: check --src")
    if out.resolve().is_relative_to(src.resolve()):
        raise ValueError(f"--out {out} lies inside the source {src}: data_prep never writes into a source")
    for flag, path in {"--src": src, **inputs}.items():
        for candidate in {path, src / path}:  # tsv finds --labels as given or inside --src
            if candidate.exists() and candidate.resolve().is_relative_to(out.resolve()):
                raise ValueError(
                    f"{flag} {path} lies inside --out {out}: replacing --out would delete it; "
                    "choose an --out beside it"
                )


def drop_repeated_images(items) -> list[RawItem]:
    """One image, one label, one split: a row naming an image that an earlier row named is dropped with
    a reason naming that row. With the same label the first row is kept (the image in a second split
    would leak between train and test); with different labels nobody can tell which is right, so every
    row of that image is dropped and the user fixes the labels."""
    items = list(items)
    by_image: dict[str, list[RawItem]] = {}
    for item in items:
        key = _image_key(item)
        if key is not None:
            by_image.setdefault(key, []).append(item)
    repeated = [group for group in by_image.values() if len(group) > 1]
    for group in repeated:
        _mark_repeats(group)
    if repeated:
        log.warning(
            "images named by more than one row: %d (first: %s); see the reasons in manifest.json",
            len(repeated), ", ".join(i.origin for i in repeated[0]),
        )  # fmt: skip
    return items


def _image_key(item: RawItem) -> str | None:
    if item.label_error is not None or not isinstance(item.image, Path) or not item.image.is_file():
        return None  # a missing or unusable row gets its own reason
    return os.path.realpath(item.image)  # `x.png`, `./x`, a symlink and an absolute path are one image


def _label_key(item: RawItem) -> tuple[str, ...] | None:
    """Labels compared as tokens: `x+1` and `x + 1` are one label."""
    if item.formula is None:
        return None
    return tuple(item.formula.split() if item.pretokenized else tokenize(strip_dollars(item.formula)))


def _mark_repeats(group: list[RawItem]) -> None:
    first = group[0]
    if len({_label_key(item) for item in group}) > 1:
        for item in group:
            others = ", ".join(other.origin for other in group if other is not item)
            item.label_error = (
                f"the same image has another label at {others}: which one is right is unknown, so no row "
                "of this image is kept (fix the labels and import again)"
            )
        return
    for item in group[1:]:
        if item.split == first.split:
            item.label_error = f"repeats {first.origin} (the same image and label; that row is kept)"
        else:
            kept = f"kept in {first.split}" if first.split else "kept"
            item.label_error = (
                f"the same image and label as {first.origin} ({kept}): "
                "one image in two splits would leak between training and testing"
            )
