"""Helpers the importers share: line reading that survives bad bytes, image lookup, split names."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "dev": "validate", "val": "validate", "valid": "validate",
    "validate": "validate", "validation": "validate",
    "test": "test", "testing": "test",
}  # fmt: skip


def read_lines(path: Path) -> list[str | None]:
    """Lines split on \\n only (im2latex formulas hold \\x0c and friends that str.splitlines would split
    on, shifting every later line number); a line that is not UTF-8 comes back as None."""
    out: list[str | None] = []
    for part in read_raw_lines(path):
        try:
            out.append(part.rstrip(b"\r").decode("utf-8"))
        except UnicodeDecodeError:
            out.append(None)
    return out


def read_raw_lines(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    return parts


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
