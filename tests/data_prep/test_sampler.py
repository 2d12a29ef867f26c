"""python -m pytest tests/data_prep/test_sampler.py -q"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from data_prep.sampler import BucketBatchSampler

BUCKETS = [(40, 160), (50, 200), (60, 40), (100, 500)]


def random_sizes(seed: int, n: int = 97) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    return [BUCKETS[i] for i in rng.integers(0, len(BUCKETS), size=n)]


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_never_mix_sizes_and_cover_every_index_once(drop_last):
    for seed in range(60):
        sizes = random_sizes(seed)
        batch_size = 1 + seed % 9
        sampler = BucketBatchSampler(sizes, batch_size, shuffle=True, seed=seed, drop_last=drop_last)
        sampler.set_epoch(seed % 4)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for batch in batches:
            assert len({sizes[i] for i in batch}) == 1, f"seed {seed}: batch {batch} mixes sizes"
            assert 1 <= len(batch) <= batch_size
            if drop_last:
                assert len(batch) == batch_size
        seen = Counter(i for batch in batches for i in batch)
        assert max(seen.values()) == 1
        if drop_last:  # only each bucket's remainder (< batch_size) is dropped
            per_bucket = Counter(sizes)
            expected = sum(n - n % batch_size for n in per_bucket.values())
            assert len(seen) == expected
        else:
            assert sorted(seen) == list(range(len(sizes)))


def test_order_is_deterministic_per_seed_and_epoch_and_changes_between_them():
    sizes = random_sizes(3, n=200)

    def order(seed, epoch):
        sampler = BucketBatchSampler(sizes, 8, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(5, 2) == order(5, 2)
    assert order(5, 2) != order(5, 3)
    assert order(5, 2) != order(6, 2)


def test_without_shuffle_batches_follow_the_data_order_bucket_by_bucket():
    sizes = [(40, 160), (50, 200), (40, 160), (40, 160), (50, 200)]
    sampler = BucketBatchSampler(sizes, 2, shuffle=False, seed=0)
    sampler.set_epoch(7)  # no effect without shuffle
    assert list(sampler) == [[0, 2], [3], [1, 4]]


def test_len_matches_batches_for_uneven_buckets():
    sizes = [(1, 1)] * 10 + [(2, 2)] * 3
    assert len(BucketBatchSampler(sizes, 4, shuffle=False)) == 3 + 1
    assert len(BucketBatchSampler(sizes, 4, shuffle=False, drop_last=True)) == 2


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": 4, "seed": -1}])
def test_bad_arguments_name_the_value(kwargs):
    with pytest.raises(ValueError, match=str(kwargs.get("seed", kwargs["batch_size"]))):
        BucketBatchSampler([(1, 1)], shuffle=True, **kwargs)


def test_training_batches_never_hold_a_lone_image():
    # bucket A: 5 images at batch 2 -> [2, 3] (the lone last image joins the batch before it);
    # bucket B: one image, nothing to join -> a batch of its own
    sizes = [(40, 200)] * 5 + [(50, 120)]
    sampler = BucketBatchSampler(sizes, 2, shuffle=True, seed=0, min_batch=2)
    batches = list(sampler)
    assert sorted(len(b) for b in batches) == [1, 2, 3] and len(sampler) == 3
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4, 5]
    every = BucketBatchSampler(sizes, 2, shuffle=False)
    assert sorted(len(b) for b in every) == [1, 1, 2, 2] and len(every) == 4
