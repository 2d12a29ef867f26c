"""Everything training writes to MLflow (the one module of training that imports it): the run logger a
training run (`python -m training train`) and a study's trial share, the `train` experiment's runs, the
project's store, and a trained checkpoint as an MLflow model.

    with training_run(name) as run: train(config, out, callbacks=[MlflowRun.active()])
    search.tracking.StudyTracker.trial_run(...) -> an MlflowRun on the trial's child run
    log_formula_model(best_pt, registered_name="NAME-best")      # then models:/NAME-best/latest

An MlflowRun writes into one run by id through MlflowClient, so several worker processes can log into the
same study without fighting over a "current run". As a training callback it logs the config (params +
config.yaml) and run facts (`info.*`) at the start, the loop's per-epoch metrics (`train/loss`,
`val/avg_score`, ...; step = epoch), the best epoch's metrics as `best/...`, the last validation's sample
predictions and, when asked, best.pt. Tracking never kills training: a failing call is logged, timed
(`seconds`, which the harness-overhead benchmark reads) and skipped.

The model is a pyfunc around `training.predict.Predictor`: the checkpoint travels as an artifact, and
with it the vocabulary, the image options and the pen-rendering options of the dataset it was trained on,
so a served model decodes what `predict --checkpoint` decodes. Its input is a table with an `image`
column (training.image_input: a path, base64 PNG/JPEG or pixels); its output is one space-tokenised LaTeX
string per row ("" for an input that cannot be read, as `predict` writes an empty line).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from core import typed_config
from core.mlflow_store import project_store_in_use, ready_uri
from core.paths import mlruns_dir
from training.callbacks import Callback
from training.image_input import decode_image, encode_png, images_of

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"  # the model's artifact key
EXAMPLE_SIZE = (32, 96)  # the input example: a blank strip, small enough for the model's metadata
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
    why in `error`; `config_at_start` False when the caller logged the config already (a trial)."""

    def __init__(
        self,
        client: Any,
        run_id: str | None,
        *,
        error: str | None = None,
        config_at_start: bool = True,
        log_checkpoint: bool = False,
    ):
        self.client, self.run_id, self.error = client, run_id, error
        self.config_at_start, self.log_checkpoint = config_at_start, log_checkpoint
        self.seconds = 0.0
        self.sample_predictions: list[dict[str, Any]] = []
        self.samples_logged = False
        self.finished = False
        self.info: dict[str, Any] = {}

    @classmethod
    def active(cls, *, log_checkpoint: bool = True) -> MlflowRun:
        """The fluent API's active run (`mlflow.start_run()`), or a no-op logger that says there is none."""
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
        items = [mlflow.entities.Param(k, _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_BATCH):
            self._timed("log_batch", params=items[i : i + MAX_BATCH])

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        now = int(time.time() * 1000)
        rows = [mlflow.entities.Metric(k, v, now, step) for k, v in numeric_metrics(metrics).items()]
        if rows:
            self._timed("log_batch", metrics=rows)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._timed("log_batch", tags=[mlflow.entities.RunTag(k, str(v)) for k, v in tags.items()])

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
        if self.config_at_start:
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


def migrate_store(uri: str) -> None:
    """Runs MLflow's schema migrations on the store at `uri` (core.mlflow_store creates it whole)."""
    mlflow.MlflowClient(tracking_uri=uri).search_experiments()


def store_uri() -> str:
    """The tracking URI, the project's store created whole first when it is the one in use."""
    return ready_uri(migrate_store)


def training_run(name: str) -> contextlib.AbstractContextManager:
    """A run of the `train` experiment for `python -m training train`, when runs are tracked here at all
    (MLFLOW_TRACKING_URI set or the project's store exists); else a context that yields None."""
    if not project_store_in_use():
        return contextlib.nullcontext(None)
    mlflow.set_tracking_uri(store_uri())
    client = mlflow.MlflowClient()
    if client.get_experiment_by_name("train") is None and not os.environ.get("MLFLOW_TRACKING_URI"):
        # the project's store keeps artifacts under mlruns/, not under ./mlruns of wherever this runs
        location = (mlruns_dir() / "artifacts" / "train").resolve().as_uri()
        with contextlib.suppress(Exception):  # another process created it first
            client.create_experiment("train", artifact_location=location)
    mlflow.set_experiment("train")
    return mlflow.start_run(run_name=name)


# MLflow warns at the class statement that predict() has no type hints: it would read them as a schema of
# its own beside the logged signature, so there are none, and every command that imports this module
# would print that warning. (A filter cannot drop it: MLflow resets the filters around its own check.)
with warnings.catch_warnings():
    _show = warnings.showwarning

    def _without_the_type_hint_notice(message: Any, *args: Any, **kwargs: Any) -> None:
        if "Add type hints to the `predict` method" not in str(message):
            _show(message, *args, **kwargs)

    warnings.showwarning = _without_the_type_hint_notice

    class FormulaModel(mlflow.pyfunc.PythonModel):
        def load_context(self, context: Any) -> None:
            from training.predict import Predictor

            self.predictor = Predictor(Path(context.artifacts[CHECKPOINT]), device="auto")

        # no type hints: MLflow would read them as a schema of their own beside the logged signature
        def predict(self, context, model_input, params=None):
            inputs = [decode_image(value) for value in images_of(model_input)]
            rows = self.predictor.predict(inputs)
            return [row.prediction for row in rows]


def log_formula_model(
    checkpoint: Path, *, registered_name: str | None = None, tags: dict[str, str] | None = None
) -> str:
    """Logs `checkpoint` as a pyfunc model into the active run (and registers it under
    `registered_name`, its version tagged with `tags`); returns the model's URI."""
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame({"image": [encode_png(np.full(EXAMPLE_SIZE, 255, dtype=np.uint8))]})
    signature = infer_signature(example, pd.Series(["x ^ { 2 }"], name="latex"))
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=FormulaModel(),
        artifacts={CHECKPOINT: str(checkpoint)},
        signature=signature,
        input_example=example,
        # this project's own environment: serving with --env-manager local needs no requirement list,
        # and inferring one would load the model and scan its imports
        pip_requirements=[],
        registered_model_name=registered_name,
    )
    if registered_name and info.registered_model_version is not None:
        client = mlflow.MlflowClient()
        for key, value in (tags or {}).items():
            client.set_model_version_tag(registered_name, str(info.registered_model_version), key, value)
    return info.model_uri


def predict_with_model(uri: str, paths: list[Path]) -> list[str]:
    """`python -m training predict --model URI`: the registered model's predictions for these files."""
    import pandas as pd

    mlflow.set_tracking_uri(store_uri())
    model = mlflow.pyfunc.load_model(uri)
    return list(model.predict(pd.DataFrame({"image": [str(p) for p in paths]})))


__all__ = [
    "FormulaModel",
    "MlflowRun",
    "log_formula_model",
    "numeric_metrics",
    "predict_with_model",
    "store_uri",
    "training_run",
]
