"""One worker of the load benchmark: `python -m search worker ...` with a trainer that sleeps and reports.

    python -m benchmarks.load_worker worker NAME --storage URL --no-progress

The load benchmark (benchmarks/load_bench.py) measures the harness (storage, sampling, pruning, MLflow,
recovery), not training, so each trial's training is replaced by `SleepingTrainer`: it sleeps
LOAD_EPOCH_SECONDS per epoch and reports a deterministic learning curve through the same callbacks the
real loop calls, so Hyperband prunes as it would. A trial whose lr lies above FAIL_ABOVE_LR raises on
purpose (about a tenth of random draws), as a bug in one config would.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

FAIL_ABOVE_LR = 0.05  # the top tenth of the load spec's log-uniform lr range fails on purpose


class FailsOnPurpose(ValueError):
    """The error a load-benchmark trial raises on purpose (the study must record it and go on)."""


@dataclass
class SleptResult:
    best_metrics: dict
    history: list = field(default_factory=list)
    best_checkpoint: Path = Path("best.pt")
    last_checkpoint: Path = Path("last.pt")
    sample_predictions: list = field(default_factory=list)
    decode_speed: dict = field(default_factory=dict)


def curve(config, epoch: int) -> float:
    """Val avg that rises with the epochs, best at lr 1e-2 and a wide model: something for TPE to find
    and for Hyperband to cut."""
    width = {32: 0.8, 64: 0.9}.get(config.model.d_model, 1.0)
    peak = max(0.0, 80.0 - 15.0 * abs(math.log10(config.optim.lr) + 2.0)) * width
    return peak * (1 - 0.5**epoch) - 10.0 * config.model.dropout


class SleepingTrainer:
    """training.loop.train's signature; sleeps `epoch_seconds` per epoch instead of training."""

    def __init__(self, epoch_seconds: float):
        self.epoch_seconds = epoch_seconds

    def __call__(self, config, out_dir, *, callbacks, resume_from=None):
        if config.optim.lr > FAIL_ABOVE_LR:
            raise FailsOnPurpose(f"lr {config.optim.lr:.3g} > {FAIL_ABOVE_LR}: fails on purpose")
        info = {"start_epoch": 1, "history": []}
        for cb in callbacks:
            cb.on_train_start(config, info)
        best: dict = {}
        for epoch in range(1, config.trainer.epochs + 1):
            time.sleep(self.epoch_seconds)
            score = curve(config, epoch)
            metrics = {"train/loss": 3.0 / epoch, "val/loss": 3.5 / epoch, "val/avg_score": score,
                       "val/bleu4": score, "val/exact_match": score / 2, "val/edit_score": score,
                       "epoch_time_s": self.epoch_seconds}  # fmt: skip
            info["history"].append({"epoch": epoch, "val/avg_score": score})
            for cb in callbacks:
                cb.on_epoch_end(epoch, metrics)  # Hyperband's cut arrives here as PruneTrial
            if score >= best.get("val/avg_score", -math.inf):
                best = dict(metrics)
        return SleptResult(best_metrics=best, history=info["history"])


def main(argv: list[str]) -> int:
    from search.cli import main as search_main

    seconds = float(os.environ.get("LOAD_EPOCH_SECONDS", "0.5"))
    return search_main(argv, train_fn=SleepingTrainer(seconds))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
