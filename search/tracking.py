"""MLflow bookkeeping for studies: experiment = study, one parent run per study, a child run per trial.

    python -m search study smoke && python -m search ui      # then open http://127.0.0.1:5000

The store is `sqlite:///mlruns/mlflow.db` with artifacts under `mlruns/` (or MLFLOW_TRACKING_URI). Runs
are written through MlflowClient with explicit run ids, so several worker processes can log into the
same study without fighting over a "current run", and every run is closed in `finally`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import contextmanager
from typing import Any

import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from core.paths import mlruns_dir
from core.typed_config import flatten
from search.mlflow_store import ensure_store

log = logging.getLogger(__name__)

# Optuna trial state -> MLflow run status (the mapping).
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
PARENT_ATTR = "mlflow_parent_run_id"
MAX_BATCH = 100  # MLflow accepts at most 100 params (and 1000 metrics) per log_batch call


def tracking_uri() -> str:
    import os

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = mlruns_dir() / "mlflow.db"
    ensure_store(store)  # created whole or not at all; a half-made one is a clear StoreError
    return f"sqlite:///{store}"


def get_client() -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri())


# MLflow 3's UI opens untagged experiments in its GenAI (traces) view; ours are training runs.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment named after the study, created on first use with artifacts under mlruns/."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":  # deleted in the UI: runs cannot be added to it
            log.warning("MLflow experiment %r was deleted; restoring it to log the study", name)
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    location = (mlruns_dir() / "artifacts" / name).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
    except Exception:  # another worker created it between our lookup and create
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)
    return text[:6000]


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a per-epoch metrics dict (sample predictions and NaN left out)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


class TrialRun:
    """One trial's child run: params at start, a log_batch per epoch, tags and status at the end."""

    def __init__(self, client: MlflowClient | None, run_id: str | None, error: str | None = None):
        self.client, self.run_id = client, run_id
        self.error = error  # why there is no run (an unwritable or locked store): the trial trains anyway
        self.seconds = 0.0  # time spent in MLflow calls (the harness-overhead benchmark reads it)
        self.sample_predictions: list[dict[str, Any]] = []
        self.finished = False

    def _timed(self, method: str, *args, **kwargs) -> None:
        """self.client.<method>(*args, **kwargs), timed; a failure is logged, never raised."""
        if self.run_id is None:
            return
        start = time.perf_counter()
        try:
            getattr(self.client, method)(*args, **kwargs)
        except Exception as exc:  # tracking must never kill a trial
            log.warning("MLflow call %s failed for run %s: %s", method, self.run_id, exc)
        finally:
            self.seconds += time.perf_counter() - start

    def log_params(self, params: dict[str, Any]) -> None:
        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_BATCH):
            self._timed("log_batch", self.run_id, params=items[i : i + MAX_BATCH])

    def log_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        now = int(time.time() * 1000)
        rows = [Metric(k, v, now, epoch) for k, v in numeric_metrics(metrics).items()]
        if rows:
            self._timed("log_batch", self.run_id, metrics=rows)

    def set_tags(self, tags: dict[str, Any]) -> None:
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self._timed("log_batch", self.run_id, tags=items)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._timed("log_text", self.run_id, text, artifact_file)

    def finish(self, state: str, tags: dict[str, Any] | None = None) -> None:
        """End the run with the status that matches the Optuna `state` (KILLED when unknown)."""
        self.finished = True
        if self.sample_predictions:
            rows = self.sample_predictions
            table = {key: [str(r.get(key, "")) for r in rows] for key in ("id", "reference", "prediction")}
            self._timed("log_table", self.run_id, data=table, artifact_file="sample_predictions.json")
        if self.run_id is None:
            return
        self.set_tags({"optuna.state": state, **(tags or {})})
        self._timed("set_terminated", self.run_id, status=RUN_STATUS.get(state, "KILLED"))


class StudyTracker:
    """Opens the study's parent run (shared by every worker) and child runs for trials."""

    def __init__(self, study_name: str, parent_run_id: str | None = None, client: MlflowClient | None = None):
        self.study_name = study_name
        self.client = client or get_client()
        self.experiment_id = experiment_id(self.client, study_name)
        self.parent_run_id = parent_run_id

    def ensure_parent(self, tags: dict[str, Any] | None = None) -> str:
        """The study's parent run: reused when it exists in this store, else created (RUNNING)."""
        if self.parent_run_id is not None:
            try:
                self.client.get_run(self.parent_run_id)
                self.client.update_run(self.parent_run_id, status="RUNNING")
                return self.parent_run_id
            except Exception:
                log.info("parent run %s is not in %s; creating a new one", self.parent_run_id, tracking_uri())
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"study-{self.study_name}",
            tags={"optuna.study_name": self.study_name, "search.role": "study", **(tags or {})},
        )
        self.parent_run_id = run.info.run_id
        return self.parent_run_id

    def finish_parent(self, status: str = "FINISHED") -> None:
        if self.parent_run_id is not None:
            self.client.set_terminated(self.parent_run_id, status=status)

    @contextmanager
    def trial_run(self, trial_number: int, params: dict[str, Any], config: dict[str, Any]):
        """A child run `trial-<n>`; if the body leaves without calling finish(), the run is KILLED
        (Ctrl-C) or FAILED (an exception), never left RUNNING."""
        tags = {
            "optuna.study_name": self.study_name,
            "optuna.trial_number": trial_number,
            "search.role": "trial",
        }
        if self.parent_run_id is not None:
            tags["mlflow.parentRunId"] = self.parent_run_id
        start = time.perf_counter()
        try:
            run = self.client.create_run(self.experiment_id, run_name=f"trial-{trial_number}", tags=tags)
            child = TrialRun(self.client, run.info.run_id)
        except Exception as exc:  # a store that broke mid-study costs the trial its run, not its training
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("trial %d trains without an MLflow run: %s", trial_number, reason)
            child = TrialRun(None, None, error=reason[:500])
        child.seconds += time.perf_counter() - start
        child.log_params({**flatten(config), **{f"optuna.{k}": v for k, v in params.items()}})
        child.log_text(yaml.safe_dump(config, sort_keys=False), "config.yaml")
        try:
            yield child
        except KeyboardInterrupt:
            if not child.finished:
                child.finish("INTERRUPTED", {"search.reason": "interrupted"})
            raise
        except BaseException:
            if not child.finished:
                child.finish("FAIL")
            raise
        finally:
            if not child.finished:
                child.finish("INTERRUPTED")
