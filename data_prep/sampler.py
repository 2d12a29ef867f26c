"""Bucketed batches: every batch holds images of one size, so no batch pays for padding.

    python -c "from data_prep.sampler import BucketBatchSampler; print(list(BucketBatchSampler(
        [(40, 200), (40, 200), (50, 120)], 2, shuffle=True, seed=0)))"

Used as a DataLoader's `batch_sampler` by `data_prep.dataset.build_loader`; call `set_epoch(epoch)` before
each epoch so the order changes between epochs yet stays reproducible for a (seed, epoch) pair.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class BucketBatchSampler(Sampler[list[int]]):
    """Groups dataset indices by image size, then batches within each group.

    Without shuffle the batches come bucket by bucket in order of first appearance, indices in order
    (a stable order for validation). With shuffle, indices are shuffled within each bucket and the batches
    of all buckets are interleaved, both from a generator seeded by (seed, epoch).
    """

    def __init__(
        self,
        sizes: Sequence[Hashable],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        min_batch: int = 1,
    ):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed!r}")
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        # Training passes 2: BatchNorm cannot normalise one image whose features are 1x1 (a deep cut of a
        # small crop), so a bucket's last lone image joins the batch before it.
        self.min_batch = int(min_batch)
        self.epoch = 0
        buckets: dict[Hashable, list[int]] = {}
        for index, size in enumerate(sizes):
            buckets.setdefault(tuple(size) if isinstance(size, list) else size, []).append(index)
        self.buckets: dict[Hashable, list[int]] = buckets

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _bounds(self, n: int) -> list[tuple[int, int]]:
        """(start, stop) of one bucket's batches."""
        stop = n - n % self.batch_size if self.drop_last else n
        bounds = [(i, min(i + self.batch_size, stop)) for i in range(0, stop, self.batch_size)]
        if bounds and bounds[-1][1] - bounds[-1][0] < self.min_batch:
            if len(bounds) > 1:
                last = bounds.pop()
                bounds[-1] = (bounds[-1][0], last[1])
        return bounds

    def __len__(self) -> int:
        return sum(len(self._bounds(len(ix))) for ix in self.buckets.values())

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None
        batches: list[list[int]] = []
        for indices in self.buckets.values():
            order = np.asarray(indices)
            if rng is not None:
                order = order[rng.permutation(len(order))]
            batches.extend(order[a:b].tolist() for a, b in self._bounds(len(order)))
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        yield from batches
