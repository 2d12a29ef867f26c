"""The one MLflow logger: a training run (`python -m training train`) and a study's trial log the same way.

    with mlflow.start_run() as run: train(config, out, callbacks=[MlflowRun.active()])
    search.tracking.StudyTracker.trial_run(...) -> an MlflowRun on the trial's child run

An MlflowRun writes into one run by id through MlflowClient, so several worker processes can log into the
same study without fighting over a "current run". As a training callback it logs the config (params +
config.yaml) and run facts (`info.*`) at the start, the loop's per-epoch metrics (`train/loss`,
`val/avg_score`, ...; step = epoch), the best epoch's metrics as `best/...`, the last validation's sample
predictions and, when asked, best.pt. Tracking never kills training: a failing call is logged, timed
(`seconds`, which the harness-overhead benchmark reads) and skipped.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from core import typed_config
from training.callbacks import Callback

logger = logging.getLogger(__name__)

MAX_BATCH = 100  # MLflow accepts at most 100 params (and 1000 metrics) per log_batch call
INFO_PARAMS = ("num_parameters", "train_size", "val_size", "dataset_hash", "device")


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a metrics dict (the epoch counter, flags and NaN left out)."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool)
        and math.isfinite(value)
    }  # fmt: skip


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
    return text[:6000]


class MlflowRun(Callback):
    """One MLflow run, written by id. `run_id` None (no run, or a store that broke) logs nothing and says
    why in `error`; `log_config` False when the caller logged the config already (a trial, at its start)."""

    def __init__(
        self,
        client: Any,
        run_id: str | None,
        *,
        error: str | None = None,
        log_config: bool = True,
        log_checkpoint: bool = False,
    ):
        self.client, self.run_id, self.error = client, run_id, error
        self.logs_config, self.log_checkpoint = log_config, log_checkpoint
        self.seconds = 0.0
        self.sample_predictions: list[dict[str, Any]] = []
        self.samples_logged = False
        self.finished = False
        self.info: dict[str, Any] = {}

    @classmethod
    def active(cls, *, log_checkpoint: bool = True) -> MlflowRun:
        """The fluent API's active run (`mlflow.start_run()`), or a no-op logger that says there is none."""
        import mlflow

        run = mlflow.active_run()
        if run is None:
            logger.warning("no active MLflow run, nothing is logged; call mlflow.start_run()")
            return cls(None, None, error="no active MLflow run")
        return cls(mlflow.MlflowClient(), run.info.run_id, log_checkpoint=log_checkpoint)

    # -- calls into MLflow: timed, never raising ---------------------------------------------------------
    def _timed(self, method: str, *args: Any, **kwargs: Any) -> None:
        if self.run_id is None:
            return
        start = time.perf_counter()
        try:
            getattr(self.client, method)(self.run_id, *args, **kwargs)
        except Exception as exc:  # tracking must never kill training
            logger.warning("MLflow call %s failed for run %s: %s", method, self.run_id, exc)
        finally:
            self.seconds += time.perf_counter() - start

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_BATCH):
            self._timed("log_batch", params=items[i : i + MAX_BATCH])

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(k, v, now, step) for k, v in numeric_metrics(metrics).items()]
        if rows:
            self._timed("log_batch", metrics=rows)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._timed("log_batch", tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_text(self, text: str, artifact_file: str) -> None:
        self._timed("log_text", text, artifact_file)

    def log_config(self, config: dict[str, Any], extra_params: dict[str, Any] | None = None) -> None:
        self.log_params({**typed_config.flatten(config), **(extra_params or {})})
        self.log_text(typed_config.dump_yaml(config), "config.yaml")

    def _log_samples(self) -> None:
        if self.sample_predictions and not self.samples_logged:
            rows = self.sample_predictions
            table = {key: [str(r.get(key, "")) for r in rows] for key in ("id", "reference", "prediction")}
            self._timed("log_table", data=table, artifact_file="sample_predictions.json")
            self.samples_logged = True

    def finish(self, status: str, tags: dict[str, Any] | None = None) -> None:
        """End the run with MLflow `status` (FINISHED, KILLED, FAILED), logging what is still pending."""
        self.finished = True
        self._log_samples()
        if tags:
            self.set_tags(tags)
        self._timed("set_terminated", status=status)

    # -- as a training callback ---------------------------------------------------------------------------
    def on_train_start(self, config: Any, info: dict[str, Any]) -> None:
        self.info = info  # the loop refreshes info["sample_predictions"] after each validation
        facts = {f"info.{k}": info[k] for k in INFO_PARAMS if k in info}
        if self.logs_config:
            self.log_config(typed_config.to_dict(config), facts)
        else:
            self.log_params(facts)

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        self.log_metrics(metrics, epoch)
        if self.info.get("sample_predictions"):
            self.sample_predictions = list(self.info["sample_predictions"])

    def on_train_end(self, result: Any) -> None:
        self.log_metrics({f"best/{k}": v for k, v in result.best_metrics.items()}, 0)
        self.log_metrics(getattr(result, "decode_speed", {}), 0)  # decode/ms_per_formula, formulas_per_s
        self.sample_predictions = list(result.sample_predictions or self.sample_predictions)
        self._log_samples()
        if self.log_checkpoint and result.best_checkpoint.exists():
            self._timed("log_artifact", str(result.best_checkpoint), "checkpoints")


__all__ = ["MlflowRun", "numeric_metrics"]
