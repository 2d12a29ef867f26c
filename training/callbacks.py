"""Hooks into the training loop: the search reports and prunes through them, MLflow logs through them.

    from training.callbacks import Callback

The loop calls, in order: `on_train_start(config, info)` once, `on_batch_end(epoch, step, steps,
images_per_s)` after every optimizer step, `on_epoch_end(epoch, metrics)` after every epoch (1-based; the
`val/*` keys are present only on epochs that ran a validation), `on_train_end(result)`
once on success. An exception raised by a callback (e.g. `optuna.TrialPruned`) propagates out of
`training.loop.train` after the loop has closed its progress bars and loaders.
"""

from __future__ import annotations

from typing import Any


class Callback:
    """No-op base; override what you need."""

    def on_train_start(self, config: Any, info: dict[str, Any]) -> None:
        """`info`: out_dir, device, num_parameters, train_size, val_size, steps_per_epoch, start_epoch.

        The loop keeps this same dict up to date: after every validation `info["sample_predictions"]`
        holds a few {"id", "reference", "prediction"} rows (space-joined tokens), so a callback that keeps
        a reference to `info` can log them even when it stops the run early."""

    def on_batch_end(self, epoch: int, step: int, steps: int, images_per_s: float) -> None:
        """After optimizer step `step` of `steps` in `epoch`; `images_per_s` is the epoch's rate so far."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        """`metrics`: the per-epoch keys of training.loop, all numbers (safe for mlflow.log_metrics)."""

    def on_train_end(self, result: Any) -> None:
        """`result`: the TrainResult about to be returned."""


__all__ = ["Callback"]
