"""`--format inkml --src DIR`: handwritten formulas as pen traces (CROHME, MathWriting), every `*.inkml`
below DIR, subfolders included.

    python -m data_prep import --format inkml --src CROHME --out data/crohme \\
        --split-dirs test=TestINKMLGT --split-ratio 0.9 0.1 0

Truth: `annotation[type=truth]` (CROHME) or MathWriting's `normalizedLabel` / `label` (`--ink-label`
picks one; `auto` takes the first present in that order). Traces are rendered by `data_prep.ink` and then
go through the usual crop -> downsample -> bucket path. Splits: `--split-dirs SPLIT=FOLDER,...` (a split
may be named more than once); without it, top-level folders named like a split (`train/`, `valid/`,
`test/`, as MathWriting ships) give theirs. Files outside every split folder are split by ratio, grouped
by formula.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from data_prep.importers._common import SPLIT_ALIASES, require_dir
from data_prep.ink import InkmlImage, InkOptions, InkRejected, read_inkml
from data_prep.items import RawItem

# Handwritten truth spells one formula many ways; x2 downsampling anti-aliases the strokes; MathWriting
# holds matrices written by hand, which are formulas like any other.
DEFAULTS: dict = {"canonical": True, "downsample": 2, "keep_multiline": True}
INK_ARGS = ("label_field", "symbol_px", "stroke_px")


def iter_items(src: Path, split_dirs: str | None = None, **ink) -> Iterator[RawItem]:
    src = require_dir(src, "inkml")
    options = InkOptions(**ink)
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() == ".inkml" and p.is_file())
    splits = _split_folders(src, split_dirs)
    for path in files:
        rel = path.relative_to(src).as_posix()
        item_id = rel[: -len(path.suffix)].replace("/", "__")
        split = _split_of(rel, splits)
        try:
            formula = read_inkml(path).label(options.label_field)
        except InkRejected as e:
            yield RawItem(item_id, split, None, label_error=str(e), origin=rel)
            continue
        except Exception as e:  # one file the reader did not foresee never ends the import
            yield RawItem(item_id, split, None, label_error=f"unreadable InkML: {type(e).__name__}: {e}",
                          origin=rel)  # fmt: skip
            continue
        if formula is None:
            auto = options.label_field == "auto"
            wanted = "truth, normalizedLabel or label" if auto else options.label_field
            error = f"no LaTeX annotation ({wanted}) in {path.name}"
            yield RawItem(item_id, split, None, label_error=error, origin=rel)
            continue
        yield RawItem(item_id, split, InkmlImage(path, options), formula, origin=rel)


def manifest_options(split_dirs: str | None = None, **ink) -> dict:
    """What the manifest records: the rendering (predict renders pen input the same way) and the splits."""
    return {"ink": asdict(InkOptions(**ink)), "split_dirs": split_dirs or "auto"}


def _split_folders(src: Path, split_dirs: str | None) -> list[tuple[str, str]]:
    """(folder relative to src, split) pairs, longest folder first so a nested one wins."""
    if split_dirs is None:
        return [(p.name, SPLIT_ALIASES[p.name.lower()]) for p in sorted(src.iterdir())
                if p.is_dir() and p.name.lower() in SPLIT_ALIASES]  # fmt: skip
    pairs = []
    for part in (p.strip() for p in split_dirs.split(",") if p.strip()):
        split, sep, folder = part.partition("=")
        split_name = SPLIT_ALIASES.get(split.strip().lower())
        if not sep or split_name is None or not folder.strip():
            raise ValueError(
                f"--split-dirs entry {part!r}: write SPLIT=FOLDER with SPLIT one of train, validate, test "
                "(e.g. --split-dirs train=TrainINKML,test=TestINKMLGT)"
            )
        path = src / folder.strip()
        if not path.is_dir() or not path.resolve().is_relative_to(src.resolve()):
            raise FileNotFoundError(f"--split-dirs folder {folder.strip()!r} is not a folder inside {src}")
        rel = path.resolve().relative_to(src.resolve()).as_posix()  # `./Test/`, `Test/.` name one folder
        if rel == "." or not any(p.suffix.lower() == ".inkml" for p in path.rglob("*")):
            raise ValueError(f"--split-dirs folder {folder.strip()!r} holds no .inkml file below {src}")
        pairs.append((rel, split_name))
    return sorted(pairs, key=lambda p: -len(p[0]))


def _split_of(rel: str, folders: list[tuple[str, str]]) -> str | None:
    for folder, split in folders:
        if rel.startswith(folder + "/"):
            return split
    return None
