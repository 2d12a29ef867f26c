"""Log a training run into MLflow: params, per-epoch metrics, resolved config, best checkpoint.

    mlflow.start_run(); train(config, out_dir, callbacks=[MlflowCallback()])

The callback writes into the MLflow run that is active when training starts (the search opens a nested
child run per trial; `python -m training train` opens one only when MLFLOW_TRACKING_URI is set). It keeps
that run's id, so later logging never lands in another run. Metric names are the loop's keys
(`train/loss`, `val/avg_score`, ...) with step = epoch; params are the flattened config (`optim.lr`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from core import typed_config
from training.callbacks import Callback

logger = logging.getLogger(__name__)


class MlflowCallback(Callback):
    def __init__(self, *, log_checkpoint: bool = True, log_params: bool = True):
        self.log_checkpoint = log_checkpoint
        self.log_params = log_params
        self.run_id: str | None = None
        self.info: dict[str, Any] = {}
        self._client = None

    def on_train_start(self, config: Any, info: dict[str, Any]) -> None:
        import mlflow
        from mlflow.entities import Param

        run = mlflow.active_run()
        if run is None:
            logger.warning("MlflowCallback: no active MLflow run, nothing is logged; call mlflow.start_run()")
            return
        self.run_id, self.info, self._client = run.info.run_id, info, mlflow.MlflowClient()
        plain = typed_config.to_dict(config)
        if self.log_params:
            params = [Param(k, str(v)) for k, v in typed_config.flatten(plain).items()]
            params += [Param(f"info.{k}", str(info[k])) for k in ("num_parameters", "train_size", "val_size",
                                                                    "dataset_hash", "device") if k in info]
            self._client.log_batch(self.run_id, params=params)
        self._client.log_text(self.run_id, typed_config.dump_yaml(plain), "config.yaml")

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [
            Metric(key, float(value), now, epoch)
            for key, value in metrics.items()
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool)
        ]
        self._client.log_batch(self.run_id, metrics=rows)

    def on_train_end(self, result: Any) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        best = [Metric(f"best/{k}", float(v), now, 0) for k, v in result.best_metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if best:
            self._client.log_batch(self.run_id, metrics=best)
        samples = result.sample_predictions
        if samples:
            table = {key: [row[key] for row in samples] for key in ("id", "reference", "prediction")}
            self._client.log_table(self.run_id, table, "sample_predictions.json")
        if self.log_checkpoint and result.best_checkpoint.exists():
            self._client.log_artifact(self.run_id, str(result.best_checkpoint), "checkpoints")


__all__ = ["MlflowCallback"]
