"""`python -m search dashboard NAME` serves the study's own storage through optuna-dashboard over HTTP and
goes away with SIGTERM; `python -m search ui` starts MLflow without its GenAI job runner."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest

from core.paths import REPO_ROOT
from search.cli import main
from search.run import serve
from search.study.storage import create_storage


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def smoke_study(isolated_home):
    """A `smoke` journal with two finished trials, written as `make study` writes it (no training)."""
    study = optuna.create_study(study_name="smoke", storage=create_storage("smoke"), direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    for value, rate in ((41.5, 1e-3), (47.25, 3e-3)):
        study.add_trial(optuna.trial.create_trial(params={"optim.lr": rate}, distributions={"optim.lr": lr},
                                                  value=value))  # fmt: skip
    return isolated_home


def test_the_dashboard_serves_the_study_over_http_and_stops_on_sigterm(smoke_study):
    port = _free_port()
    env = {**os.environ, "IM2LATEX_HOME": str(smoke_study)}
    cmd = [sys.executable, "-m", "search", "dashboard", "smoke", "--port", str(port)]
    launcher = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, studies = time.monotonic() + 90, None
        while studies is None and time.monotonic() < deadline:
            assert launcher.poll() is None, launcher.stdout.read().decode()
            try:
                studies = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
            except OSError:
                time.sleep(0.5)
        assert studies is not None, "the dashboard did not answer within 90 s"
        (study,) = [s for s in studies if s["study_name"] == "smoke"]
        detail = _get(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}?after=0")
        assert sorted(t["values"][0] for t in detail["trials"]) == [41.5, 47.25]
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=30)
    out = launcher.stdout.read().decode()
    assert f"http://127.0.0.1:{port}/dashboard/studies/{study['study_id']}" in out
    deadline = time.monotonic() + 10
    while _port_open(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _port_open(port), "the dashboard's server outlived its launcher"


def test_a_dashboard_for_a_missing_study_is_one_line(isolated_home, capsys):
    assert main(["dashboard", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "make study NAME=nope" in err


def test_the_mlflow_ui_starts_without_its_job_runner(isolated_home, monkeypatch, capsys):
    started = {}
    monkeypatch.setattr(serve, "serve", lambda cmd, env=None: started.update(cmd=cmd, env=env) or 0)
    assert main(["ui", "--port", "5123"]) == 0
    assert started["env"] == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    assert started["cmd"][started["cmd"].index("--host") + 1] == "127.0.0.1"
    assert "expand it" in capsys.readouterr().out
