"""The MLflow store under mlruns/ is created whole or not at all; a half-made one is named, not a traceback.

    python -m pytest tests/search/test_mlflow_store.py -q
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from core import mlflow_store
from core.mlflow_store import StoreError, ensure_store, half_made
from core.paths import REPO_ROOT, mlruns_dir
from search.cli import main
from training.mlflow_logging import migrate_store


@pytest.fixture(autouse=True)
def _fresh_check_cache(monkeypatch):
    monkeypatch.setattr(mlflow_store, "_CHECKED", set())


def test_a_half_migrated_store_is_one_clear_line_that_keeps_the_store(isolated_home, capsys):
    store = mlruns_dir() / "mlflow.db"
    store.parent.mkdir(parents=True)
    with sqlite3.connect(store) as db:  # what a kill -9 during MLflow's migrations leaves behind
        db.execute("CREATE TABLE experiments (experiment_id INTEGER)")
        db.execute("CREATE TABLE _alembic_tmp_experiments (experiment_id INTEGER)")
    assert "_alembic_tmp_experiments" in half_made(store) and "mv " in half_made(store)
    assert main(["study", "smoke", "--trials", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "half-made" in err[0] and "holds no runs" in err[0]
    assert store.exists()  # nothing deleted
    assert not (isolated_home / "studies" / "smoke.journal").exists()  # stopped before spending anything


def test_a_half_migrated_store_with_runs_is_never_moved_aside(tmp_path):
    store = tmp_path / "mlflow.db"
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE runs (run_uuid TEXT)")
        db.execute("INSERT INTO runs VALUES ('a'), ('b')")
        db.execute("CREATE TABLE _alembic_tmp_runs (run_uuid TEXT)")
    message = half_made(store)
    assert "holds 2 runs: keep it" in message and "mlflow db upgrade" in message and "mv " not in message
    with pytest.raises(StoreError, match="keep it"):
        ensure_store(store, migrate_store)


@pytest.mark.slow
def test_kill_9_while_the_store_is_created_leaves_no_half_made_store(isolated_home):
    store = mlruns_dir() / "mlflow.db"
    code = "from search.tracking import get_client; get_client().search_experiments()"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT)
    deadline = time.monotonic() + 60
    while not list(store.parent.glob(".mlflow.db.creating-*")) and time.monotonic() < deadline:
        time.sleep(0.02)  # wait until the migrations are under way
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not store.exists() or half_made(store) is None  # never a half-made store in place
    ensure_store(store, migrate_store)  # the next command creates it whole
    assert half_made(store) is None
    assert not list(store.parent.glob(".mlflow.db.creating-*"))  # the killed process's leftovers are gone


def test_a_killed_creators_leftovers_and_their_sqlite_journal_are_removed(tmp_path):
    """A kill mid-transaction leaves SQLite's rollback journal beside the temporary store: both go."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    store = tmp_path / "mlflow.db"
    leftovers = [tmp_path / f".mlflow.db.creating-{gone.pid}{s}" for s in ("", "-journal")]
    for path in leftovers:
        path.write_bytes(b"half")
    ensure_store(store, migrate_store)
    assert half_made(store) is None and not any(p.exists() for p in leftovers)


def test_a_shared_tracking_server_keeps_the_artifacts_of_every_worker(isolated_home):
    from search.tracking import artifact_location

    assert artifact_location("s", "http://mlflow-host:5000") is None  # the server's artifact root
    local = artifact_location("s", f"sqlite:///{mlruns_dir() / 'mlflow.db'}")
    assert local == (mlruns_dir() / "artifacts" / "s").resolve().as_uri()
