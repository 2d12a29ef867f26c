"""`python -m training train` on a study's export registers the model as `<study>-best`; predicting from the
registry equals predicting from the checkpoint; `mlflow models serve` answers a request with an image."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import mlflow
import numpy as np
import pytest
import yaml

from tests.training._helpers import tiny_config
from training.cli import main, provenance
from training.image_input import decode_image, encode_png
from training.predict import Predictor, list_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registered(overfit_data, tmp_path_factory):
    """A tiny model trained from an export-style config (provenance header) into a fresh store."""
    home = tmp_path_factory.mktemp("home")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    config = tiny_config(overfit_data, trainer={"epochs": 2})
    path = home / "tiny.best.yaml"
    header = "# exported by `python -m search export tiny`\n# study: tiny\n# trial: 7\n# code_version: abc\n"
    path.write_text(header + yaml.safe_dump(config), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IM2LATEX_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        out = home / "run"
        assert main(["train", str(path), "--out", str(out)]) == 0
        yield {"home": home, "uri": uri, "checkpoint": out / "best.pt", "data": overfit_data}
    mlflow.set_tracking_uri(None)


def test_an_exports_provenance_is_read_from_its_header(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("# study: crohme-cpu\n# trial: 13\n# code_version: f93a563\nmodel: {}\n# study: no\n")
    assert provenance(path) == {"study": "crohme-cpu", "trial": "13", "code_version": "f93a563"}
    (tmp_path / "plain.yaml").write_text("model: {}\n")
    assert provenance(tmp_path / "plain.yaml") == {}


def test_the_export_is_registered_with_its_study_trial_and_code_version(registered):
    client = mlflow.MlflowClient(registered["uri"])
    (version,) = client.search_model_versions("name='tiny-best'")
    assert version.tags == {"study": "tiny", "trial": "7", "code_version": "abc"}
    model = mlflow.models.get_model_info(f"models:/tiny-best/{version.version}")
    assert model.signature.inputs.input_names() == ["image"]


def test_predicting_from_the_registry_equals_the_checkpoint(registered, tmp_path, monkeypatch):
    monkeypatch.setenv("IM2LATEX_HOME", str(registered["home"]))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    images = registered["data"] / "images"
    by_model, by_checkpoint = tmp_path / "model.txt", tmp_path / "ckpt.txt"
    assert main(["predict", "--model", "models:/tiny-best/latest", "--images", str(images),
                 "--out", str(by_model), "--no-progress"]) == 0  # fmt: skip
    assert main(["predict", "--checkpoint", str(registered["checkpoint"]), "--images", str(images),
                 "--out", str(by_checkpoint), "--no-progress"]) == 0  # fmt: skip
    lines = by_model.read_text().splitlines()
    assert lines == by_checkpoint.read_text().splitlines() and len(lines) == len(list_images(images))
    assert any(lines), "the tiny model predicts something"


def test_pixels_base64_and_paths_decode_to_the_same_prediction(registered):
    predictor = Predictor(registered["checkpoint"], device="cpu")
    path = list_images(registered["data"] / "images")[0]
    from data_prep.images import load_gray

    pixels = load_gray(path)
    inputs = [path, decode_image(str(path)), decode_image(encode_png(pixels)), pixels,
              np.stack([pixels] * 3, axis=-1), decode_image("not an image")]  # fmt: skip
    rows = predictor.predict(inputs)
    assert len({r.prediction for r in rows[:5]}) == 1 and rows[0].prediction
    assert rows[5].error and rows[5].prediction == ""  # one bad input, the others unharmed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_serves_the_registered_model_over_http(registered):
    port = _free_port()
    # MLflow starts uvicorn by name: the venv's bin/ must be on PATH, as `make serve` puts it
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered["uri"], "IM2LATEX_HOME": str(registered["home"]),
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/tiny-best/latest",
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    path = list_images(registered["data"] / "images")[0]
    from data_prep.images import load_gray

    body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[encode_png(load_gray(path))]]}})
    try:
        deadline, answer = time.monotonic() + 120, None
        while answer is None and time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body.encode(),
                                             headers={"Content-Type": "application/json"})  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.loads(response.read())
            except OSError:
                time.sleep(1.0)
        assert answer is not None, "the model server did not answer within 120 s"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    expected = Predictor(registered["checkpoint"], device="cpu").predict([path])[0].prediction
    assert answer["predictions"] == [expected]
