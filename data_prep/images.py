"""Image processing shared by every importer: safe load -> grayscale -> crop to ink -> downsample -> pad.

Every failure raises ImageRejected whose message is the manifest's drop reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from data_prep.buckets import AUTO, DEFAULT_BUCKETS, Bucket, fit_bucket

DEFAULT_MAX_PIXELS = 40_000_000  # a 1654x2339 page is 3.9 M; far beyond this is a decompression bomb


@dataclass(frozen=True)
class ImageOptions:
    crop: bool = True
    margin: int = 8  # white pixels kept around the ink
    ink_threshold: int = 200  # a pixel darker than this is ink
    downsample: int = 1  # integer factor applied after cropping (im2latex's processed images used 2)
    pad: bool = True
    # "auto": fitted to the crops once all are processed (data_prep.buckets.auto_buckets); or a W x H list
    buckets: tuple[Bucket, ...] | str = AUTO
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        # A value out of range would not fail: every image would be dropped ("no ink") or quietly
        # processed differently (downsample 0 acts as 1), so it is refused here, where Python callers meet it.
        _check_int("margin", self.margin, 0, "white pixels kept around the ink")
        _check_int("ink_threshold", self.ink_threshold, 1, "a pixel darker than this is ink", high=255)
        _check_int("downsample", self.downsample, 1, "1 keeps the size, 2 halves it")
        _check_int("max_pixels", self.max_pixels, 1, "the decompression-bomb limit")


def _check_int(name: str, value: int, low: int, meaning: str, high: int | None = None) -> None:
    if not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ValueError(f"image option {name} must be a whole number {allowed} ({meaning}), got {value!r}")


class ImageRejected(ValueError):
    """An image that cannot be used; the message is the manifest's reason."""


def load_gray(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, *, precrop: bool = False) -> np.ndarray:
    """(H, W) uint8, white background; transparency is composited onto white.

    precrop: the caller crops to ink anyway, so a page may come back cut to its non-background box
    (fast in C for palette pages; the raw im2latex renders are 95% empty page)."""
    path = Path(path)
    if not path.is_file():
        raise ImageRejected(f"missing image file {path.name}")
    if path.stat().st_size == 0:
        raise ImageRejected(f"zero-byte image file {path.name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette-transparency chatter; bombs are checked below
            with Image.open(path) as im:
                width, height = im.size  # from the header: nothing decoded yet
                if width * height > max_pixels:
                    raise ImageRejected(
                        f"image too large to decode ({width}x{height} > max_pixels={max_pixels}; "
                        "decompression-bomb guard, raise --max-pixels if it is genuine)"
                    )
                im.load()
                if im.format in ("JPEG", "MPO", "TIFF", "WEBP"):
                    im = ImageOps.exif_transpose(im)  # phone photos of handwriting carry a rotation tag
                return _to_gray(im, precrop)
    except ImageRejected:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageRejected(f"unreadable image {path.name}: {type(e).__name__}: {e}") from None


def _to_gray(im: Image.Image, precrop: bool = False) -> np.ndarray:
    if im.mode == "P" and "transparency" in im.info:
        # The raw im2latex pages: black ink drawn as alpha over a transparent background. A lookup table
        # over the palette composites onto white without expanding the page to RGBA.
        palette = np.array(im.getpalette("RGB"), dtype=np.float32).reshape(-1, 3)
        gray = palette @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        alpha = np.full(len(palette), 255.0, dtype=np.float32)
        trans = im.info["transparency"]
        if isinstance(trans, bytes):
            alpha[: len(trans)] = np.frombuffer(trans, dtype=np.uint8)[: len(alpha)]
        elif isinstance(trans, int) and trans < len(alpha):
            alpha[trans] = 0
        lut = np.clip(255.0 - alpha / 255.0 * (255.0 - gray), 0, 255).round().astype(np.uint8)
        lut = np.concatenate([lut, np.full(256 - len(lut), 255, np.uint8)]) if len(lut) < 256 else lut
        if precrop and lut[0] == 255:
            # Index 0 is white background, so the box of non-zero indices holds all the ink.
            box = im.getbbox()
            if box is None:
                return np.full((1, 1), 255, np.uint8)
            im = im.crop(box)
        return lut[np.asarray(im)]
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and im.info.get("transparency") is not None):
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im.convert("RGBA"))
    elif im.mode.startswith("I") or im.mode == "F":
        return _deep_to_uint8(np.asarray(im, dtype=np.float64), im.mode)
    return np.asarray(im.convert("L"))


def _deep_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """16-bit / 32-bit / float pixels to 8 bits by their bit depth, never by the image's own range: a
    blank 16-bit page must stay white, not be stretched into black."""
    top = arr.max(initial=0.0)
    if mode.startswith("I;16") or (mode == "I" and top > 255):
        arr = arr / 257.0  # 65535 -> 255
    elif mode == "F" and top <= 1.0:
        arr = arr * 255.0  # floats in [0, 1]
    return np.clip(arr, 0, 255).round().astype(np.uint8)


def ink_box(gray: np.ndarray, threshold: int) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the pixels darker than threshold, bottom/right exclusive."""
    ink = gray < threshold
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(ink[rows[0] : rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def crop_to_ink(gray: np.ndarray, threshold: int = 200, margin: int = 8) -> np.ndarray:
    box = ink_box(gray, threshold)
    if box is None:
        raise ImageRejected(f"no ink in image (no pixel darker than ink_threshold={threshold})")
    top, bottom, left, right = box
    cropped = gray[top:bottom, left:right]
    return np.pad(cropped, margin, constant_values=255) if margin else cropped


def downsample(gray: np.ndarray, factor: int) -> np.ndarray:
    if factor <= 1:
        return gray
    h, w = gray.shape
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    return np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.LANCZOS))


def pad_to_bucket(gray: np.ndarray, buckets: Sequence[Bucket] = DEFAULT_BUCKETS) -> np.ndarray:
    """White-pad (ink at the top left, as im2markup does) to the smallest bucket that fits."""
    h, w = gray.shape
    bucket = fit_bucket(w, h, buckets)
    if bucket is None:
        largest = max(buckets, key=lambda b: b[0] * b[1])
        raise ImageRejected(
            f"image too large for the buckets ({w}x{h} after cropping; "
            f"largest bucket {largest[0]}x{largest[1]})"
        )
    out = np.full((bucket[1], bucket[0]), 255, dtype=np.uint8)  # (H, W)
    out[:h, :w] = gray
    return out


def process_gray(gray: np.ndarray, options: ImageOptions) -> np.ndarray:
    if options.crop:
        gray = crop_to_ink(gray, options.ink_threshold, options.margin)
    elif ink_box(gray, options.ink_threshold) is None:
        raise ImageRejected(f"no ink in image (no pixel darker than ink_threshold={options.ink_threshold})")
    gray = downsample(gray, options.downsample)
    if options.pad and options.buckets != AUTO:  # auto buckets are padded once every crop is known
        gray = pad_to_bucket(gray, options.buckets)
    return gray


def save_png(gray: np.ndarray, path: Path) -> None:
    # compress_level 1: PNGs are decoded once into the loader's cache, writing speed matters more.
    Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8)).save(path, format="PNG", compress_level=1)
