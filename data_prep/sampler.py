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
    ):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed!r}")
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0
        buckets: dict[Hashable, list[int]] = {}
        for index, size in enumerate(sizes):
            buckets.setdefault(tuple(size) if isinstance(size, list) else size, []).append(index)
        self.buckets: dict[Hashable, list[int]] = buckets

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.drop_last:
            return sum(len(ix) // self.batch_size for ix in self.buckets.values())
        return sum(-(-len(ix) // self.batch_size) for ix in self.buckets.values())

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None
        batches: list[list[int]] = []
        for indices in self.buckets.values():
            order = np.asarray(indices)
            if rng is not None:
                order = order[rng.permutation(len(order))]
            stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
            batches.extend(order[i : i + self.batch_size].tolist() for i in range(0, stop, self.batch_size))
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        yield from batches
