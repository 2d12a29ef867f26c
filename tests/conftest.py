"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import shutil

import pytest

from core.paths import shared_data_dir


def pytest_configure(config):
    """Under `pytest -n N` (make test), each of the N workers gets its share of the cores: N processes with
    a full-width OpenMP pool each would spin-wait for cores the others hold. Subprocesses a test starts
    inherit the share through OMP_NUM_THREADS."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        share = max(1, cores // workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(share))
        torch.set_num_threads(share)


def _shared(name: str):
    path = shared_data_dir() / name
    if not path.is_dir():
        pytest.skip(
            f"real data sample {path} is absent (it sits in ../shared/data beside a developer's or CI's "
            "checkout; set IM2LATEX_SHARED_DATA to point elsewhere)"
        )
    return path


@pytest.fixture(scope="session")
def im2latex_sample():
    """../shared/data/im2latex-sample: processed images, formulas.norm.lst, *_filter.lst (897/85/100)."""
    return _shared("im2latex-sample")


@pytest.fixture(scope="session")
def im2latex_raw_sample():
    """../shared/data/im2latex-raw-sample: 1,200 raw page renders, raw formulas.lst, split lists."""
    return _shared("im2latex-raw-sample")


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory):
    """An empty MLflow store, migrated once per test process: each new store is a copy of it."""
    from training.mlflow_logging import migrate_store

    path = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    migrate_store(f"sqlite:///{path}")
    return path


@pytest.fixture
def isolated_home(tmp_path, monkeypatch, migrated_store):
    """Point the project's data/, studies/, mlruns/, runs/ at a temp folder. The project's store is still
    created the project's way (core.mlflow_store), but its migrations are a copy of one made earlier:
    MLflow's take 2-4 s, paid by dozens of tests (subprocesses a test starts run them for real)."""
    import training.mlflow_logging

    def copy_migrated(uri: str) -> None:
        shutil.copyfile(migrated_store, uri.removeprefix("sqlite:///"))

    monkeypatch.setattr(training.mlflow_logging, "migrate_store", copy_migrated)
    monkeypatch.setenv("IM2LATEX_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path
