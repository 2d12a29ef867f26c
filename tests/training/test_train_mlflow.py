"""MlflowRun (the one MLflow logger) logs params, per-epoch metrics, the config and the best checkpoint of a
training run into the active run; without one it logs nothing and training goes on."""

from __future__ import annotations

import json

import mlflow
import pytest

from tests.training._helpers import tiny_config
from training.config import load_train_config
from training.loop import train
from training.mlflow_logging import MlflowRun


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    yield mlflow.MlflowClient(uri)
    mlflow.set_tracking_uri(None)


def test_the_mlflow_logger_logs_a_whole_run(overfit_data, tmp_path, tracking):
    cfg = load_train_config(tiny_config(overfit_data, trainer={"epochs": 2, "num_sample_predictions": 3}))
    # an explicit artifact location: a sqlite store otherwise puts artifacts under ./mlruns (the repo)
    experiment_id = mlflow.create_experiment("training-test", (tmp_path / "art").as_uri())
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run() as run:
        result = train(cfg, tmp_path / "run", callbacks=[MlflowRun.active()])
    data = tracking.get_run(run.info.run_id).data
    assert data.params["optim.lr"] == "0.003" and data.params["model.kind"] == "transformer"
    assert data.params["info.train_size"] == "8"
    history = tracking.get_metric_history(run.info.run_id, "val/avg_score")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == [row["val/avg_score"] for row in result.history]
    assert len(tracking.get_metric_history(run.info.run_id, "train/loss")) == 2
    assert data.metrics["best/val/avg_score"] == result.best_metrics["val/avg_score"]
    artifacts = {a.path for a in tracking.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "checkpoints", "sample_predictions.json"} <= artifacts
    checkpoints = tracking.list_artifacts(run.info.run_id, "checkpoints")
    assert [a.path for a in checkpoints] == ["checkpoints/best.pt"]
    table = json.loads(open(tracking.download_artifacts(run.info.run_id, "sample_predictions.json")).read())
    assert table["columns"] == ["id", "reference", "prediction"] and len(table["data"]) == 3
    config_text = open(tracking.download_artifacts(run.info.run_id, "config.yaml")).read()
    assert load_train_config(__import__("yaml").safe_load(config_text)) == cfg


def test_without_an_active_run_nothing_is_logged_and_training_works(overfit_data, tmp_path):
    cfg = load_train_config(tiny_config(overfit_data, trainer={"epochs": 1}))
    callback = MlflowRun.active()
    result = train(cfg, tmp_path / "run", callbacks=[callback])
    assert callback.run_id is None and result.best_checkpoint.exists()
