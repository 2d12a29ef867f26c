"""What an importer yields: one raw item per image/label pair, before any processing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

SPLITS = ("train", "validate", "test")


class ImageSource(Protocol):
    """An image made on the fly (synth); must pickle, so a worker process can render it."""

    def render(self) -> np.ndarray: ...  # (H, W) uint8, white background


@dataclass
class RawItem:
    id: str
    split: str | None  # "train" | "validate" | "test"; None: assigned later by seed and ratio
    image: Path | ImageSource | None  # None: the label has no image
    formula: str | None = None  # None with label_error None: an unlabelled item (a test split)
    label_error: str | None = None  # why the label could not be read (missing, not UTF-8, ...)
    pretokenized: bool = False  # the formula is already space-tokenised (formulas.norm.lst)
    origin: str = ""  # where it came from, for the manifest (a relative path or "line 12")


def read_label(path: Path) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason) for a label file."""
    if not path.is_file():
        return None, f"missing label file {path.name}"
    try:
        return path.read_bytes().decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        return None, f"label {path.name} is not UTF-8 ({e.reason} at byte {e.start})"
