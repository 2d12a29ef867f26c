"""Several worker processes sharing one study (journal file, PostgreSQL), and worker planning.

python -m pytest tests/search/test_workers.py -q          # -m postgres for the PostgreSQL one only
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.run.workers import plan_slots, split_trials
from search.spec.parse import load_spec
from search.study.storage import create_storage
from search.study.studies import prepare_study
from search.tracking import get_client

PG_URLS = ["postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test"]

WORKER_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import conftest
from search.cli import main
sys.exit(main(sys.argv[1:], train_fn=conftest.FakeTraining(epoch_seconds=0.01)))
"""


def test_plan_slots_pins_workers_to_gpus_and_packs_them():
    assert plan_slots(None, [], 1) == [None]
    assert plan_slots(3, [], 1) == [None, None, None]
    assert plan_slots(None, ["0", "1"], 1) == ["0", "1"]
    assert plan_slots(None, ["0", "1"], 2) == ["0", "0", "1", "1"]
    assert plan_slots(3, ["2", "5"], 1) == ["2", "5", "2"]
    assert split_trials(10, 3) == [4, 3, 3]
    assert split_trials(1, 3) == [1]


def _run_two_workers(tmp_path: Path, name: str, storage: str | None, trials_each: int) -> None:
    script = tmp_path / "fake_worker.py"
    script.write_text(WORKER_SCRIPT.format(tests=str(Path(__file__).parent)), encoding="utf-8")
    args = [sys.executable, str(script), "worker", name, "--trials", str(trials_each), "--no-progress"]
    if storage:
        args += ["--storage", storage]
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    procs = [subprocess.Popen(args, env=env, cwd=repo, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]


def _assert_shared(study: optuna.Study, expected: int, mlflow: bool) -> None:
    trials = study.trials
    assert sorted(t.number for t in trials) == list(range(expected)), "no lost or duplicated trial numbers"
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert sum("baseline" in t.user_attrs for t in trials) == 1, "the baseline ran once, in one worker"
    assert len({t.datetime_start for t in trials}) == expected
    if mlflow:
        client = get_client()
        runs = client.search_runs([client.get_experiment_by_name(study.study_name).experiment_id])
        names = sorted(r.info.run_name for r in runs if r.info.run_name.startswith("trial-"))
        assert names == sorted(f"trial-{i}" for i in range(expected)), "one MLflow run per trial"


@pytest.mark.slow
def test_two_workers_share_a_journal_study(fake_study, tmp_path):
    spec = load_spec(fake_study)
    prepare_study(spec, None)
    _run_two_workers(tmp_path, fake_study, None, 3)
    study = optuna.load_study(study_name=fake_study, storage=create_storage(fake_study))
    _assert_shared(study, 6, mlflow=True)


def _postgres_url() -> str:
    import sqlalchemy

    from search.study.storage import _with_installed_driver

    errors = []
    for url in PG_URLS:
        try:
            engine = sqlalchemy.create_engine(
                _with_installed_driver(url), connect_args={"connect_timeout": 3}
            )
            with engine.connect():
                return url
        except Exception as exc:
            errors.append(f"{url}: {str(exc).splitlines()[0]}")
    pytest.skip("PostgreSQL on 127.0.0.1:5432 (database test, trust auth) unreachable: " + "; ".join(errors))


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_share_a_postgres_study(fake_study, tmp_path):
    url = _postgres_url()
    name = f"{fake_study}-{uuid.uuid4().hex[:8]}"
    (tmp_path / "studies" / f"{name}.yaml").write_text(
        (tmp_path / "studies" / f"{fake_study}.yaml").read_text(), encoding="utf-8"
    )
    spec = load_spec(name)
    prepare_study(spec, url)
    try:
        _run_two_workers(tmp_path, name, url, 3)
        study = optuna.load_study(study_name=name, storage=create_storage(name, url))
        _assert_shared(study, 6, mlflow=True)
        assert study.user_attrs["spec_data"], "workers ran the spec recorded on the study"
    finally:
        optuna.delete_study(study_name=name, storage=create_storage(name, url))


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_share_a_postgres_study_through_the_storage_proxy(fake_study, tmp_path):
    """`python -m search storage-proxy` in front of PostgreSQL; the study is made and run through
    grpc://: the same accounting as the direct path, and the database holds the proxy's connections."""
    import socket
    import time

    url = _postgres_url()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    repo = Path(__file__).resolve().parents[2]
    proxy = subprocess.Popen(
        [sys.executable, "-m", "search", "storage-proxy", "--storage", url, "--port", str(port)],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    name = f"{fake_study}-{uuid.uuid4().hex[:8]}"
    (tmp_path / "studies" / f"{name}.yaml").write_text(
        (tmp_path / "studies" / f"{fake_study}.yaml").read_text(), encoding="utf-8"
    )
    grpc_url = f"grpc://127.0.0.1:{port}"
    try:
        assert f"workers join with --storage {grpc_url}" in proxy.stdout.readline()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the server listens a moment after it says so
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        prepare_study(load_spec(name), grpc_url)
        _run_two_workers(tmp_path, name, grpc_url, 2)
        study = optuna.load_study(study_name=name, storage=create_storage(name, url))  # read directly
        _assert_shared(study, 4, mlflow=True)
    finally:
        proxy.send_signal(signal.SIGINT)  # Ctrl-C; an untimed wait in gRPC used to ignore it
        assert proxy.wait(timeout=15) == 0, "Ctrl-C stops the proxy cleanly"
        optuna.delete_study(study_name=name, storage=create_storage(name, url))
