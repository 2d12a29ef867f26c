"""Decode a split's PNGs once into a memory-mapped uint8 file, so training epochs never re-decode them.

    python -c "from data_prep.image_cache import load_or_build; load_or_build('data/synth', 'train', names)"

(normally built on first use by `data_prep.dataset.FormulaDataset`). Layout under `<root>/cache/`:

- `<split>-<key16>.u8`: every decoded grayscale image of the split, row-major, back to back;
- `<split>.json`: the index (`key`, `data` file name, per image `offset`/`shape`, and `skipped` items with
  their reason). Replacing the index is the single atomic commit: data files are named by their key and
  never rewritten, so a reader never pairs an index with the wrong data.

The key hashes the manifest's `content_hash` (or, without a manifest, every image's size and mtime) and the
split list, so a changed dataset rebuilds its cache. Two processes building at once are serialised by a
lock file where the platform has `fcntl`; without it each writes its own temp files and the last rename wins
(both hold the same content). Same idea as nanoGPT's `np.memmap` token file in `train.py`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from data_prep.images import load_gray
from data_prep.manifest import DERIVED_CACHE_DIR, load_manifest

try:  # POSIX only; elsewhere the write-temp-then-rename commit alone keeps the cache consistent
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
CACHE_DIRNAME = DERIVED_CACHE_DIR
# PIL raises SyntaxError for some broken PNG chunks and DecompressionBombError (an Exception) for huge images.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
_DECODE_CHUNK = 256
_BAR_MIN = 2000  # smaller caches build in a few seconds: no progress bar


def read_gray(path: Path) -> np.ndarray:
    """A prepared image as a writable uint8 (H, W), ink dark on white (the importers' own reader, so
    transparency and odd modes are handled one way everywhere)."""
    gray = np.array(load_gray(path), dtype=np.uint8)  # a writable copy
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"{path}: decoded to an empty image of shape {gray.shape}")
    return gray


def cache_key(root: Path, split: str, names: Sequence[str]) -> str:
    """Changes whenever the prepared data (manifest hash, or image sizes/mtimes) or the split list does."""
    root = Path(root)
    digest = hashlib.sha256(f"v{CACHE_VERSION}\n{split}\n".encode())
    digest.update("\n".join(names).encode("utf-8"))
    content_hash = _manifest_hash(root)
    if content_hash:
        digest.update(f"\nmanifest:{content_hash}".encode())
    else:
        for name in names:
            try:
                st = (root / "images" / name).stat()
                digest.update(f"\n{name}:{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                digest.update(f"\n{name}:missing".encode())
    return digest.hexdigest()


def _manifest_hash(root: Path) -> str | None:
    value = load_manifest(root, required=False).get("content_hash")
    return str(value) if value else None


@dataclass
class ImageCache:
    """Read-only view of a built cache: `get(name)` returns a uint8 (H, W) view into the memory map."""

    data_path: Path
    entries: dict[str, tuple[int, int, int]]  # name -> (offset, H, W)
    skipped: list[dict[str, str]] = field(default_factory=list)
    _mm: np.memmap | None = field(default=None, repr=False)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def shape(self, name: str) -> tuple[int, int]:
        _, h, w = self.entries[name]
        return h, w

    def get(self, name: str) -> np.ndarray:
        offset, h, w = self.entries[name]
        if self._mm is None:  # opened lazily so each DataLoader worker maps the file itself
            self._mm = np.memmap(self.data_path, dtype=np.uint8, mode="r")
        return self._mm[offset : offset + h * w].reshape(h, w)  # (H, W)

    def __getstate__(self) -> dict:
        # A pickled memmap would copy the whole file into every spawned worker: reopen it there instead.
        state = dict(self.__dict__)
        state["_mm"] = None
        return state


def load_or_build(root: Path, split: str, names: Sequence[str]) -> ImageCache:
    """The split's cache, built first if it is missing or stale. Unreadable images end up in `.skipped`."""
    root = Path(root)
    cache_dir = root / CACHE_DIRNAME
    key = cache_key(root, split, names)
    cached = _load(cache_dir, split, key)
    if cached is not None:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _lock(cache_dir / f"{split}.lock"):
        cached = _load(cache_dir, split, key)  # another process may have built it while we waited
        if cached is not None:
            return cached
        _build(root, cache_dir, split, names, key)
    cached = _load(cache_dir, split, key)
    if cached is None:
        raise RuntimeError(f"image cache {cache_dir / split}.json was written but cannot be read back")
    return cached


def _load(cache_dir: Path, split: str, key: str) -> ImageCache | None:
    """The cache if its index matches `key` and its data file is whole; None means (re)build it."""
    index_path = cache_dir / f"{split}.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("key") != key or index.get("version") != CACHE_VERSION:
            return None
        data_path = cache_dir / index["data"]
        if data_path.stat().st_size != index["nbytes"]:
            logger.warning("image cache %s has the wrong size; rebuilding it", data_path)
            return None
        entries = {name: (int(off), int(h), int(w)) for name, off, h, w in index["images"]}
        skipped = [dict(item) for item in index.get("skipped", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # absent, or not an index we wrote
        return None
    return ImageCache(data_path, entries, skipped)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _decode(path: Path) -> np.ndarray | str:
    """The image, or the reason it cannot be used."""
    if not path.exists():
        return "missing file"
    try:
        return read_gray(path)
    except DECODE_ERRORS as exc:
        return f"unreadable image: {type(exc).__name__}: {exc}"


def _build(root: Path, cache_dir: Path, split: str, names: Sequence[str], key: str) -> None:
    unique = list(dict.fromkeys(names))
    data_name = f"{split}-{key[:16]}.u8"
    images, skipped, offset = [], [], 0
    fd, tmp_data = tempfile.mkstemp(prefix=f".{data_name}.", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as out, ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            bar = tqdm(total=len(unique), desc=f"caching {split} images", unit="img", leave=False,
                       disable=True if len(unique) < _BAR_MIN else None)  # None: off in a log file
            for start in range(0, len(unique), _DECODE_CHUNK):  # chunks bound the decoded images held
                chunk = unique[start : start + _DECODE_CHUNK]
                decoded = pool.map(_decode, [root / "images" / n for n in chunk])
                for name, result in zip(chunk, decoded, strict=True):
                    if isinstance(result, str):
                        logger.warning("skipping image %s of split %s: %s", name, split, result)
                        skipped.append({"name": name, "reason": result})
                        continue
                    out.write(np.ascontiguousarray(result).tobytes())
                    images.append([name, offset, *result.shape])
                    offset += result.size
                bar.update(len(chunk))
            bar.close()
        os.replace(tmp_data, cache_dir / data_name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_data)
        raise
    index = {"version": CACHE_VERSION, "key": key, "split": split, "data": data_name, "nbytes": offset,
             "images": images, "skipped": skipped}
    _atomic_write_text(cache_dir / f"{split}.json", json.dumps(index))
    _remove_stale(cache_dir, split, data_name)
    logger.info("cached %d images of split %s (%.1f MB, %d skipped) in %s", len(images), split,
                offset / 1e6, len(skipped), cache_dir)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_stale(cache_dir: Path, split: str, keep: str) -> None:
    # An open memmap of an unlinked file stays valid on POSIX; elsewhere a later build retries the unlink.
    for path in cache_dir.glob(f"{split}-{'?' * 16}.u8"):
        if path.name != keep:
            with contextlib.suppress(OSError):
                path.unlink()
