"""Predict LaTeX for image or pen (InkML) files with a trained checkpoint, one line per input in order.

    python -m training predict --checkpoint runs/x/best.pt --images DIR|LIST.txt --out results.txt

A directory is read in sorted file-name order (its image and `.inkml` files); a list file holds one path
per line (relative paths are tried from the current folder, then from the list's folder). An `.inkml` file
is first drawn as the training data was (`data_prep.ink.render_inkml` with the checkpoint's `ink_options`;
a checkpoint not trained on pen input has none, so the InkOptions defaults are used and a warning says so).
Every input then goes through the same processing as the training data (`data_prep.images.process_gray`
with the checkpoint's `image_options`: crop to ink, downsample, pad to a bucket), and inputs are decoded in
batches of one size. `results.txt` gets one space-tokenised formula per input line (the course's
result.txt); an input that cannot be read, rendered or processed gets an empty line and a warning, so line
N always belongs to input N. `results.jsonl` beside it has one {"index", "id", "path", "prediction",
"score", "error"} object per input (`error`: the reason, as a dataset's manifest would give it).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from data_prep.images import ImageOptions, ImageRejected, load_gray, process_gray
from data_prep.ink import InkOptions, render_inkml
from training.checkpoint import load_checkpoint, load_model
from training.evaluate import decode_images
from training.runtime import autocast, resolve_device

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
INK_SUFFIXES = {".inkml"}


@dataclass
class PredictionRow:
    index: int
    id: str
    path: str
    prediction: str = ""
    score: float | None = None
    error: str | None = None


def list_images(source: Path) -> list[Path]:
    """The inputs of `--images`: a folder's image and InkML files sorted by name, or a list file's paths."""
    source = Path(source)
    suffixes = IMAGE_SUFFIXES | INK_SUFFIXES
    if source.is_dir():
        return sorted((p for p in source.iterdir() if p.is_file() and p.suffix.lower() in suffixes),
                      key=lambda p: p.name)
    if not source.is_file():
        raise FileNotFoundError(f"--images {source} is neither a folder of images / .inkml files nor a "
                                "file listing their paths")
    paths = []
    for line in source.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line:
            path = Path(line)
            paths.append(path if path.is_absolute() or path.exists() else source.parent / path)
    return paths


def image_options(raw: dict[str, Any] | None) -> ImageOptions:
    if not raw:
        return ImageOptions()
    known = {k: v for k, v in raw.items() if k in ImageOptions.__dataclass_fields__}
    if not isinstance(known.get("buckets", "auto"), str):  # a list; "auto" crops are predicted unpadded
        known["buckets"] = tuple(tuple(b) for b in known["buckets"])
    return ImageOptions(**known)


def is_ink(path: Path) -> bool:
    return Path(path).suffix.lower() in INK_SUFFIXES


def prepare_input(source: Path | np.ndarray, options: ImageOptions, ink: InkOptions) -> np.ndarray:
    """(H, W) uint8 pixels as the dataset pipeline would store them for `source`: a file (pen files are
    drawn first) or pixels already in memory ((H, W) gray or (H, W, 3|4) colour, dark ink on light)."""
    if isinstance(source, np.ndarray):
        return process_gray(as_gray(source), options)
    gray = render_inkml(source, ink) if is_ink(source) else load_gray(source, options.max_pixels)
    return process_gray(gray, options)


def as_gray(pixels: np.ndarray) -> np.ndarray:
    """(H, W) uint8 from a gray or RGB(A) array (0-255, or 0-1 floats), alpha composited onto white."""
    arr = np.asarray(pixels)
    if arr.dtype.kind == "f" and arr.size and float(np.nanmax(arr)) <= 1.0:
        arr = arr * 255.0
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[..., :3].astype(np.float32)
        gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's "L"
        if arr.shape[2] == 4:
            alpha = arr[..., 3].astype(np.float32) / 255.0
            gray = gray * alpha + 255.0 * (1.0 - alpha)
        arr = gray
    if arr.ndim != 2:
        raise ImageRejected(f"pixels of shape {arr.shape}: expected (H, W) gray or (H, W, 3|4) colour")
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


class Predictor:
    """A checkpoint loaded once, with the image and pen options its dataset was prepared with: what
    `predict_images` and the registered MLflow model both decode with."""

    def __init__(self, checkpoint: Path, device: str = "auto"):
        self.checkpoint = Path(checkpoint)
        self.device = resolve_device(device)
        self.model, self.vocab, self.config = load_model(self.checkpoint, self.device)
        ckpt = load_checkpoint(self.checkpoint)
        self.options = image_options(ckpt.get("image_options"))
        self.ink = InkOptions.from_dict(ckpt.get("ink_options"))
        self.trained_on_ink = ckpt.get("ink_options") is not None

    def predict(
        self,
        inputs: list[Path | np.ndarray],
        *,
        batch_size: int = 32,
        method: str = "greedy",
        beam_width: int = 5,
        max_len: int | None = None,
        progress: bool = False,
    ) -> list[PredictionRow]:
        """One PredictionRow per input, in order; unusable inputs carry `error` and an empty prediction."""
        if not self.trained_on_ink and any(not isinstance(i, np.ndarray) and is_ink(i) for i in inputs):
            logger.warning("checkpoint %s was not trained on pen input (its dataset recorded no ink "
                           "options): .inkml files are drawn with the InkOptions defaults", self.checkpoint)
        rows, batches = prepared_batches(inputs, self.options, self.ink, batch_size)
        model, dev = self.model, self.device
        with torch.no_grad():
            for batch in tqdm(batches, desc="predict", disable=not progress, dynamic_ncols=True):
                images = torch.from_numpy(np.stack([p for _, p in batch])).unsqueeze(1)  # (B, 1, H, W)
                images = images.to(dev).float().div_(255.0)
                with autocast(dev, self.config.trainer.amp, model):
                    decoded = decode_images(model, images, method=method, beam_width=beam_width,
                                            max_len=max_len)  # fmt: skip
                for (index, _), seq, score in zip(batch, decoded.sequences, decoded.scores, strict=True):
                    rows[index].prediction = " ".join(self.vocab.decode(seq))
                    rows[index].score = float(score)
        return rows


def prepared_batches(
    inputs: list[Path | np.ndarray], options: ImageOptions, ink: InkOptions, batch_size: int
) -> tuple[list[PredictionRow], list[list[tuple[int, np.ndarray]]]]:
    """A row per input (an unusable one with its `error`) and batches of (index, pixels) of one size."""
    rows = [_row(i, source) for i, source in enumerate(inputs)]
    by_shape: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = defaultdict(list)
    for row, source in zip(rows, inputs, strict=True):
        try:
            pixels = prepare_input(_as_source(source), options, ink)
        except (ImageRejected, OSError, ValueError) as exc:  # InkRejected is an ImageRejected
            row.error = str(exc)
            logger.warning("input %d (%s) skipped: %s", row.index, row.path, exc)
            continue
        by_shape[pixels.shape].append((row.index, pixels))
    return rows, [g[i : i + batch_size] for g in by_shape.values() for i in range(0, len(g), batch_size)]


def _as_source(source: Path | str | np.ndarray) -> Path | np.ndarray:
    return source if isinstance(source, np.ndarray) else Path(source)


def _row(index: int, source: Path | np.ndarray) -> PredictionRow:
    if isinstance(source, np.ndarray):
        return PredictionRow(index, f"array-{index}", f"<array {tuple(source.shape)}>")
    return PredictionRow(index, Path(source).name, str(source))


def predict_images(
    checkpoint: Path,
    paths: list[Path],
    *,
    device: str = "auto",
    batch_size: int = 32,
    method: str = "greedy",
    beam_width: int = 5,
    max_len: int | None = None,
    progress: bool = True,
) -> list[PredictionRow]:
    """One PredictionRow per path, in order; unusable inputs carry `error` and an empty prediction."""
    return Predictor(checkpoint, device).predict(
        list(paths), batch_size=batch_size, method=method, beam_width=beam_width, max_len=max_len,
        progress=progress,
    )  # fmt: skip


def write_predictions(rows: list[PredictionRow], out: Path) -> tuple[Path, Path]:
    """results.txt (one prediction per line) and results.jsonl beside it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{r.prediction}\n" for r in rows), encoding="utf-8")
    jsonl = out.with_suffix(".jsonl")
    lines = (json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in rows)
    jsonl.write_text("".join(lines), encoding="utf-8")
    return out, jsonl


__all__ = ["INK_SUFFIXES", "PredictionRow", "Predictor", "as_gray", "image_options", "is_ink", "list_images",
           "predict_images", "prepare_input", "prepared_batches", "write_predictions"]
