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
