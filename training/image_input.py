"""Images as a served model receives them: a file path, base64-encoded PNG/JPEG bytes (what a REST client
sends) or pixels ((H, W) gray or (H, W, 3) colour), turned into what training.predict.Predictor reads."""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError


def images_of(model_input: Any) -> list[Any]:
    if hasattr(model_input, "columns"):  # a pandas DataFrame, as MLflow's serving hands it over
        column = "image" if "image" in model_input.columns else model_input.columns[0]
        return list(model_input[column])
    if isinstance(model_input, dict):
        return list(model_input.get("image", []))
    if isinstance(model_input, np.ndarray) and model_input.ndim in (2, 3) and model_input.dtype != object:
        return [model_input]  # one image's pixels
    return list(model_input)


def decode_image(value: Any) -> Path | np.ndarray:
    """A path, base64 image bytes or pixels -> what Predictor reads (a bad value becomes a path that does
    not exist, which Predictor reports as unreadable without failing the other rows)."""
    if isinstance(value, np.ndarray) or isinstance(value, list):
        return np.asarray(value)
    if isinstance(value, bytes):
        return _pixels(value)
    text = str(value)
    if Path(text).is_file():
        return Path(text)
    try:
        return _pixels(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return Path(text)


def _pixels(data: bytes) -> np.ndarray | Path:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGBA"))
    except (UnidentifiedImageError, OSError):
        return Path("<undecodable image bytes>")


def encode_png(pixels: np.ndarray) -> str:
    """Base64 PNG of gray pixels: what a REST client puts in the `image` column."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
