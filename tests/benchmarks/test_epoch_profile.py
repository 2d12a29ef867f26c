"""bench_epoch_profile's split of an epoch: the three shares are the epoch's parts, measured on the epoch
the figures name (the last), and the validation rate counts the validation split's images."""

from __future__ import annotations

import pytest

from benchmarks import bench_epoch_profile

pytestmark = pytest.mark.slow


def test_the_shares_split_the_last_epoch(isolated_home):
    config = {
        "data": {"dataset": "synth-small", "train_limit": 32, "val_limit": 8, "num_workers": 0},
        "model": {"kind": "transformer", "cut_after": 2, "d_model": 32, "nhead": 2, "num_layers": 1,
                  "dim_feedforward": 64, "max_output_len": 16},
        "trainer": {"epochs": 2, "batch_size": 8, "progress": False, "decode_speed_formulas": 0,
                    "device": "cpu", "amp": False},
    }  # fmt: skip
    figures = bench_epoch_profile.profile_epoch(config)
    parts = [figures[f"cpu_epoch_{k}_share"] for k in ("step", "loader", "validation")]
    assert all(0.0 < p < 1.0 for p in parts), figures
    # the training pass and validation are the epoch, less the loop's bookkeeping between them; each share
    # is rounded to 3 decimals, so three of them may sum to 1.0015
    assert 0.85 <= sum(parts) <= 1.0015, figures
    assert figures["cpu_epoch_val_img_per_s"] > 0 and figures["cpu_epoch_train_img_per_s"] > 0
    assert figures["cpu_epoch_s"] > 0

