"""Load a prepared dataset folder for training: Dataset, bucketed batches, collate, DataLoader.

    python -c "from data_prep.dataset import build_loader; from data_prep.vocab import Vocab; \
        b = next(iter(build_loader('data/synth', 'train', Vocab.load('data/synth/vocab.json'), 8))); \
        print(b.images.shape, b.targets.shape)"

The folder format (docs/DATASETS.md): `images/*.png`, `formulas.norm.lst`, `<split>.lst` lines `<image>
<formula line>` (or just `<image>` for a split without formulas), `vocab.json`, `manifest.json`. Images are
decoded once into a memory-mapped cache (`data_prep.image_cache`) unless `use_cache=False`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from data_prep.augment import AugmentConfig, build_augment
from data_prep.image_cache import DECODE_ERRORS, ImageCache, load_or_build, read_gray
from data_prep.sampler import BucketBatchSampler
from data_prep.vocab import EOS_ID, PAD_ID, SOS_ID, Vocab

logger = logging.getLogger(__name__)

Transform = Callable[[np.ndarray], np.ndarray]
EVAL_SPLITS = ("validate", "val", "dev", "test")

__all__ = ["FormulaDataset", "BucketBatchSampler", "Batch", "collate_batch", "build_loader"]


def _missing(path: Path, root: Path) -> FileNotFoundError:
    what = "prepared dataset folder" if path == root else f"{path.name} of the prepared dataset {root}"
    return FileNotFoundError(
        f"{what} not found ({path}): build it with `make data ARGS=\"synth --out {root}\"` (the default "
        f"dataset) or `make data ARGS=\"import --format FORMAT --src DIR --out {root}\"`"
    )


def read_split(root: Path, split: str) -> list[tuple[str, int | None]]:
    """`<split>.lst` as (image file name, formula line or None) pairs, in file order."""
    path = Path(root) / f"{split}.lst"
    if not path.exists():
        raise _missing(path, Path(root))
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        head, _, last = line.rpartition(" ")
        if head and last.isdigit():
            entries.append((head.strip(), int(last)))
        else:
            entries.append((line, None))
    return entries


class FormulaDataset(Dataset):
    """Items `{"image": (1, H, W) float in [0, 1], "target": [SOS, ..., EOS] long, "id", "index"}`.

    Items are dropped (counted in `.skipped` with a reason, logged once) when their image cannot be read,
    their formula line does not exist, or their formula has more than `max_formula_len` tokens.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        vocab: Vocab,
        *,
        transform: Transform | None = None,
        use_cache: bool = True,
        max_formula_len: int | None = None,
        limit: int | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise _missing(self.root, self.root)
        self.split, self.vocab, self.transform = split, vocab, transform
        entries = read_split(self.root, split)
        formulas = self._read_formulas() if any(i is not None for _, i in entries) else []
        self.skipped: list[dict[str, str]] = []
        self.cache: ImageCache | None = self._open_cache([name for name, _ in entries]) if use_cache else None
        self.names: list[str] = []
        self._tokens: list[list[str]] = []
        self.sizes: list[tuple[int, int]] = []
        too_long = 0
        for name, line in entries:
            if limit is not None and len(self.names) >= limit:
                break
            tokens = self._formula(name, line, formulas)
            if tokens is None:
                continue
            if max_formula_len is not None and len(tokens) > max_formula_len:
                too_long += 1
                continue
            size = self._size(name)
            if size is None:
                continue
            self.names.append(name)
            self._tokens.append(tokens)
            self.sizes.append(size)
        self.num_too_long = too_long
        self.has_formulas = bool(formulas)
        if too_long:
            logger.info("%s/%s: left out %d items longer than %d tokens", self.root.name, split, too_long,
                        max_formula_len)
        if self.skipped:
            logger.warning("%s/%s: skipped %d unusable items, e.g. %s", self.root.name, split,
                           len(self.skipped), self.skipped[0])

    def _read_formulas(self) -> list[str]:
        path = self.root / "formulas.norm.lst"
        if not path.exists():
            raise _missing(path, self.root)
        # newline="\n": a stray \r or \x0b inside a formula must not shift every later line number.
        with path.open(encoding="utf-8", errors="replace", newline="\n") as fh:
            return [line.rstrip("\r\n") for line in fh]

    def _open_cache(self, names: Sequence[str]) -> ImageCache | None:
        try:
            cache = load_or_build(self.root, self.split, names)
        except OSError as exc:  # e.g. a read-only dataset folder: slower, but training still runs
            logger.warning("cannot use the image cache under %s (%s); decoding PNGs instead", self.root, exc)
            return None
        self.skipped.extend(dict(item) for item in cache.skipped)
        return cache

    def _formula(self, name: str, line: int | None, formulas: Sequence[str]) -> list[str] | None:
        if line is None:
            return []
        if line >= len(formulas) or not formulas[line].split():
            self.skipped.append({"name": name, "reason": f"formula line {line} missing or empty"})
            return None
        return formulas[line].split()

    def _size(self, name: str) -> tuple[int, int] | None:
        if self.cache is not None:
            return self.cache.shape(name) if name in self.cache else None  # the cache recorded why
        try:  # the header alone: cheap, and enough to bucket
            with Image.open(self.root / "images" / name) as img:
                w, h = img.size
            return h, w
        except DECODE_ERRORS as exc:
            self.skipped.append({"name": name, "reason": f"unreadable image: {type(exc).__name__}: {exc}"})
            return None

    def __len__(self) -> int:
        return len(self.names)

    def formula_tokens(self, i: int) -> list[str]:
        return list(self._tokens[i])

    def load_image(self, i: int) -> np.ndarray:
        """The stored image as a writable uint8 (H, W), before any transform."""
        return np.array(self._stored(i))

    def _stored(self, i: int) -> np.ndarray:
        name = self.names[i]
        if self.cache is not None:
            return self.cache.get(name)  # a read-only view into the memory map
        try:
            return read_gray(self.root / "images" / name)
        except DECODE_ERRORS as exc:  # the header read at start-up, the pixels did not: train on blank
            logger.warning("cannot decode %s (%s); using a blank image", name, exc)
            return np.full(self.sizes[i], 255, dtype=np.uint8)

    def __getitem__(self, i: int) -> dict:
        image = self._stored(i)
        if self.transform is not None:
            image = self.transform(np.array(image))
        # numpy, not torch: torch's multi-threaded elementwise ops cost ~100x more in a busy main process.
        pixels = torch.from_numpy(np.divide(image, np.float32(255), dtype=np.float32)[None])  # (1, H, W)
        ids = [SOS_ID, *self.vocab.encode(self._tokens[i]), EOS_ID] if self.has_formulas else []
        return {"image": pixels, "target": torch.tensor(ids, dtype=torch.long), "id": self.names[i],
                "index": i}


@dataclass
class Batch:
    images: torch.Tensor  # (B, 1, H, W) float in [0, 1]
    targets: torch.Tensor  # (B, T) long, [SOS, ..., EOS, PAD, ...]; T = 0 for a split without formulas
    ids: list[str]
    indices: list[int]

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(self.images.to(device, non_blocking=non_blocking),
                     self.targets.to(device, non_blocking=non_blocking), self.ids, self.indices)

    def pin_memory(self) -> Batch:
        # DataLoader(pin_memory=True) calls this on custom batch types.
        return Batch(self.images.pin_memory(), self.targets.pin_memory(), self.ids, self.indices)


def collate_batch(items: Sequence[dict]) -> Batch:
    shapes = {tuple(item["image"].shape) for item in items}
    if len(shapes) != 1:
        raise ValueError(f"a batch must hold one image size, got {sorted(shapes)}: batch with "
                         "BucketBatchSampler (build_loader does)")
    images = torch.from_numpy(np.stack([item["image"].numpy() for item in items]))  # (B, 1, H, W)
    longest = max(len(item["target"]) for item in items)
    targets = torch.full((len(items), longest), PAD_ID, dtype=torch.long)  # (B, T)
    for row, item in enumerate(items):
        targets[row, : len(item["target"])] = item["target"]
    return Batch(images, targets, [item["id"] for item in items], [item["index"] for item in items])


def build_loader(
    root: str | Path,
    split: str,
    vocab: Vocab,
    batch_size: int,
    *,
    augment: AugmentConfig | Transform | None = None,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    use_cache: bool = True,
    max_formula_len: int | None = None,
    limit: int | None = None,
) -> DataLoader:
    """A DataLoader of `Batch`es over bucketed batches; augmented only when `augment` is given.

    Call `loader.batch_sampler.set_epoch(epoch)` each epoch for a fresh, reproducible shuffle.
    """
    if augment is not None and split in EVAL_SPLITS:
        raise ValueError(f"split {split!r} is for evaluation and must not be augmented: pass augment=None")
    transform = build_augment(augment, seed=seed) if isinstance(augment, AugmentConfig) else augment
    dataset = FormulaDataset(root, split, vocab, transform=transform, use_cache=use_cache,
                             max_formula_len=max_formula_len, limit=limit)
    sampler = BucketBatchSampler(dataset.sizes, batch_size, shuffle=shuffle, seed=seed,
                                 min_batch=2 if shuffle else 1)  # shuffled = training: no lone images
    generator = torch.Generator().manual_seed(seed)  # reproducible per-worker seeds (augmentation)
    # Workers are started afresh each epoch rather than kept (persistent_workers): the loop reseeds the
    # loader's generator per epoch, so each epoch's augmentations are the same whether the run was resumed or
    # not, and a fork costs milliseconds against an epoch. torch runs each worker on one intra-op thread
    # itself; OpenCV's pool must not be reconfigured in a forked worker (cv2.setNumThreads there waits
    # forever on the parent's pool state).
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_batch, num_workers=num_workers,
                      pin_memory=pin_memory, generator=generator)
