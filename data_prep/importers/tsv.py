"""`--format tsv --src DIR --labels FILE.tsv`: any folder of images plus `filename<TAB>latex[<TAB>split]`.

The filename is a path relative to DIR, subfolders (symlinked ones too) included, with or without its
extension (`train/c1/x.png`, `train/c1/x`); a bare stem also finds the one image of that stem anywhere
below DIR. A path may also be absolute or relative to the labels file's folder, as long as it ends up
below DIR; names match whatever Unicode normal form (NFC, macOS's NFD) the file system uses. Whitespace
around fields is trimmed and a header line is skipped. The file itself is read by `label_file` (quoting,
line ends, encodings); a line break inside a quoted label is LaTeX whitespace (spreadsheets wrap long
cells), so it reads as a space. Without a split column the pipeline splits by seed and ratio.
"""

from __future__ import annotations

import os
import posixpath
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from data_prep.importers._common import IMAGE_SUFFIXES, SPLIT_ALIASES, require_dir, shared_stem_reason
from data_prep.importers.label_file import LabelRow, read_rows
from data_prep.items import RawItem

DEFAULTS: dict = {}
COLUMNS = "filename<TAB>latex[<TAB>split]"
_HEADER_WORDS = {
    "filename", "file", "image", "image_name", "name", "path", "latex", "formula", "label", "split",
}  # fmt: skip
_LINE_BREAK = re.compile(r"\s*(?:\r\n|\r|\n)\s*")


def iter_items(src: Path, labels: Path | str | None = None) -> Iterator[RawItem]:
    src = require_dir(src, "tsv images")
    labels_path = _labels_path(src, labels)
    tree = _ImageTree(src, bases=(labels_path.parent, Path.cwd()))
    used: set[Path] = set()
    for k, row in enumerate(read_rows(labels_path, 2, 3, COLUMNS)):
        if k == 0 and row.error is None and _is_header(row.fields):
            continue
        item = _row_item(row, tree, labels_path.name)
        if item.image is not None:
            used.add(item.image)
        yield item
    for path in tree.paths:
        if path not in used:
            rel = path.relative_to(src).as_posix()
            yield RawItem(tree.item_id(rel, path), None, path, origin=rel,
                          label_error=f"image has no row in {labels_path.name}")  # fmt: skip


def _row_item(row: LabelRow, tree: _ImageTree, labels_name: str) -> RawItem:
    origin = f"{labels_name}:{row.line}"
    name = row.fields[0].strip() if row.fields else ""
    image, problem = tree.find(name)
    item = RawItem(tree.item_id(name, image, row.line), None, image, origin=origin)
    if row.error is not None:
        item.label_error = row.error
        return item
    split_cell = row.fields[2].strip() if len(row.fields) > 2 else ""
    formula = _LINE_BREAK.sub(" ", row.fields[1]).strip()
    item.split = SPLIT_ALIASES.get(split_cell.lower()) if split_cell else None
    if problem:
        item.label_error = problem
    elif not formula:
        item.label_error = "empty formula"
    elif split_cell and item.split is None:
        item.label_error = f"unknown split {split_cell!r} (use train, dev/validate or test)"
    else:
        item.formula = formula
    return item


class _ImageTree:
    """Every image below the source folder, found by a row's relative path with or without its extension
    (`train/c1/x.png`, `train/c1/x`) or, failing that, by a file stem that only one image in the tree has.
    Ids are the relative path without extension, `/` -> `__`: unique and stable."""

    def __init__(self, root: Path, bases: tuple[Path, ...] = ()):
        self.root = root
        self.paths = _walk_images(root)
        # roots a row's absolute path may start with; bases a relative one may be relative to
        self.roots = {_nfc(os.path.abspath(root)), _nfc(os.path.realpath(root))}
        self.bases = [_nfc(os.path.abspath(b)) for b in (root, *bases)]
        self.by_rel: dict[str, list[Path]] = {}
        self.by_rel_stem: dict[str, list[Path]] = {}
        self.by_stem: dict[str, list[Path]] = {}
        for path in self.paths:
            rel = _nfc(path.relative_to(root).as_posix())
            self.by_rel.setdefault(rel, []).append(path)
            self.by_rel_stem.setdefault(rel[: -len(path.suffix)], []).append(path)
            self.by_stem.setdefault(_nfc(path.stem), []).append(path)

    def find(self, name: str) -> tuple[Path | None, str | None]:
        """(the image a row names, None) or (None, why it cannot be used)."""
        text = _nfc(name.replace("\\", "/").strip())
        if not text:
            return None, "empty filename"
        inside = False
        for rel in self._relative(text):
            inside = True
            image, problem = self._lookup(rel)
            if image is not None or problem is not None:
                return image, problem
        if not inside:
            return None, f"image path {name} lies outside --src {self.root}: images are read from --src only"
        return None, f"missing image file {name} (looked for it under {self.root}, with any image extension)"

    def _relative(self, text: str) -> Iterator[str]:
        """The paths below the root that a row's name may mean, most likely first: relative to the root,
        to the labels file's folder or the working folder, or absolute; as written, then through links."""
        fulls = [text] if text.startswith("/") else [posixpath.join(base, text) for base in self.bases]
        for resolve in (posixpath.normpath, lambda full: _nfc(os.path.realpath(full))):
            for full in map(resolve, fulls):
                yield from (full[len(root) + 1 :] for root in self.roots if full.startswith(root + "/"))

    def _lookup(self, rel: str) -> tuple[Path | None, str | None]:
        suffix = posixpath.splitext(rel)[1]
        stem = rel[: -len(suffix)] if suffix.lower() in IMAGE_SUFFIXES else rel
        by_stem = self.by_stem.get(stem) if "/" not in stem else None
        for candidates in (self.by_rel.get(rel), self.by_rel_stem.get(stem), by_stem):
            if candidates and len(candidates) == 1:
                return candidates[0], None
            if candidates:
                return None, shared_stem_reason(candidates)
        return None, None

    def item_id(self, name: str, image: Path | None, line: int = 0) -> str:
        if image is not None:
            rel = image.relative_to(self.root).as_posix()
            return rel[: -len(image.suffix)].replace("/", "__")
        rel = name.replace("\\", "/").strip().strip("/")
        suffix = posixpath.splitext(rel)[1]
        rel = rel[: -len(suffix)] if suffix.lower() in IMAGE_SUFFIXES else rel
        return rel.replace("/", "__") or f"line{line}"


def _walk_images(root: Path) -> list[Path]:
    """Image files below root, through symlinked folders too. A link to a folder that is in the tree
    anyway is not followed (its images keep their own path; `find` resolves a row's links), and a link
    loop ends."""
    in_tree = {os.path.realpath(folder) for folder, _, _ in os.walk(root)}
    paths, seen = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # two links to one outside folder
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = sorted(s for s in subfolders if not _links_into(os.path.join(folder, s), in_tree))
        for name in files:
            path = Path(folder, name)
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                paths.append(path)
    return sorted(paths)


def _links_into(path: str, folders: set[str]) -> bool:
    return os.path.islink(path) and os.path.realpath(path) in folders


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


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


def _is_header(fields: list[str]) -> bool:
    cells = [c.strip().lower() for c in fields]
    return any(c in _HEADER_WORDS for c in cells[:3]) and not Path(cells[0]).suffix
