"""manifest.json: what a prepared dataset holds and how it was made (a contract other tools read)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

DATA_PREP_VERSION = "1.0"
MANIFEST_NAME = "manifest.json"


DERIVED_CACHE_DIR = "cache"  # written by data_prep.image_cache, not part of the data


def content_hash(root: Path) -> str:
    """sha256 over every prepared file (path and bytes) in a fixed order.

    The manifest (which stores the hash) and the loader's derived `cache/` are left out, so the hash
    stays the same after a dataset has been trained on.
    """
    root = Path(root)
    digest = hashlib.sha256()
    files = (p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
    for path in sorted(p for p in files if p.relative_to(root).parts[0] != DERIVED_CACHE_DIR):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def write_manifest(root: Path, manifest: dict) -> dict:
    manifest = {**manifest, "content_hash": content_hash(root), "data_prep_version": DATA_PREP_VERSION}
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a source file name that is not UTF-8 (the OS hands it over escaped)
        data = (json.dumps(manifest, indent=2) + "\n").encode("ascii")
    (Path(root) / MANIFEST_NAME).write_bytes(data)
    return manifest


def load_manifest(root: Path, *, required: bool = True) -> dict:
    """The dataset's manifest. `required=False` is for readers that only enrich what they report (a
    checkpoint's image options, a study's dataset hash): a missing or unreadable manifest is then {}."""
    path = Path(root) / MANIFEST_NAME
    if not required:
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return manifest if isinstance(manifest, dict) else {}
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {root} a prepared dataset (make data ...)?")
    return json.loads(path.read_text(encoding="utf-8"))
