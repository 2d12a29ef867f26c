"""The search benchmark reuses a stored run or test score only for the same config, seed, dataset content
and code: a result from older code or other data is trained or scored again, never served as fresh."""

from __future__ import annotations

import json

import pytest

from benchmarks import search_arms
from search.spec.parse import load_spec


@pytest.fixture
def plan(tmp_path, monkeypatch):
    monkeypatch.setattr(search_arms, "dataset_hash", lambda dataset: "data-v1")
    monkeypatch.setattr(search_arms, "source_hash", lambda: "code-v1")
    return search_arms.Plan(load_spec("smoke"), 2, tmp_path / "work", tmp_path / "out", True, test_limit=8)


def _store(plan, config, seed: int) -> None:
    config = json.loads(json.dumps(config))
    config["trainer"]["seed"] = seed
    out = plan.work / "random" / f"retrain-seed{seed}"
    out.mkdir(parents=True)
    record = {"config_sha": search_arms.run_key(plan, config), "seed": seed, "best_val_avg": 50.0,
              "epochs": 3, "wall_s": 1.0, "best_checkpoint": "x", "test_avg": 40.0}  # fmt: skip
    (out / "bench_result.json").write_text(json.dumps(record))


class Trained(Exception):
    pass


def _no_training(*args, **kwargs):
    raise Trained


@pytest.mark.parametrize("changed", ["source_hash", "dataset_hash", "seed", None])
def test_a_stored_run_is_reused_only_for_the_same_config_data_and_code(plan, monkeypatch, changed):
    config = {"trainer": {"seed": 0, "epochs": 3}, "optim": {"lr": 1e-3}}
    _store(plan, config, seed=1)
    monkeypatch.setattr("training.loop.train", _no_training)
    if changed == "source_hash":
        monkeypatch.setattr(search_arms, "source_hash", lambda: "code-v2")
    elif changed == "dataset_hash":
        monkeypatch.setattr(search_arms, "dataset_hash", lambda dataset: "data-v2")
    seed = 2 if changed == "seed" else 1
    if changed is None:
        reused = search_arms.train_once(plan, "random", "retrain", config, seed=seed, test=True)
        assert reused["test_avg"] == 40.0
    else:
        with pytest.raises(Trained):  # stale: trained again
            search_arms.train_once(plan, "random", "retrain", config, seed=seed, test=True)


def test_a_test_score_is_keyed_by_the_checkpoints_bytes_not_its_path(plan, monkeypatch, tmp_path):
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights one")
    scores = iter([11.0, 22.0])
    monkeypatch.setattr(search_arms, "score_test", lambda plan, path: next(scores))
    assert search_arms._cached_test_score(plan, "tpe", checkpoint) == 11.0
    assert search_arms._cached_test_score(plan, "tpe", checkpoint) == 11.0  # reused
    checkpoint.write_bytes(b"weights two")  # a new run wrote the same path
    assert search_arms._cached_test_score(plan, "tpe", checkpoint) == 22.0


def test_the_source_hash_follows_the_code_not_the_result_files(tmp_path, monkeypatch):
    for name in search_arms.SOURCE_PACKAGES:
        (tmp_path / name).mkdir()
    (tmp_path / "search" / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(search_arms, "REPO_ROOT", tmp_path)
    before = search_arms.source_hash()
    (tmp_path / "benchmarks" / "results.json").write_text("{}")  # a bench wrote its figures
    assert search_arms.source_hash() == before
    (tmp_path / "search" / "a.py").write_text("x = 2\n")
    assert search_arms.source_hash() != before


def test_a_full_run_continues_from_its_committed_journals(tmp_path, monkeypatch):
    """A fresh machine's work folder is seeded from benchmarks/search-journals/; a journal already there
    (this machine's own progress) is never overwritten, and the quick run never reads the committed ones."""
    committed = tmp_path / "committed"
    committed.mkdir()
    (committed / "random-seed11.journal").write_text("committed trials\n")
    monkeypatch.setattr(search_arms, "JOURNALS", committed)
    monkeypatch.setattr(search_arms, "REPO_ROOT", tmp_path)
    full = search_arms.Plan(load_spec("smoke"), 2, tmp_path / "work", tmp_path / "out", False)
    path = search_arms.journal(full, "random", 11)
    search_arms._continue_committed(full, path)
    assert path.read_text() == "committed trials\n"
    path.write_text("this machine's own\n")
    search_arms._continue_committed(full, path)
    assert path.read_text() == "this machine's own\n"
    quick = search_arms.Plan(load_spec("smoke"), 2, tmp_path / "quick", tmp_path / "out", True)
    search_arms._continue_committed(quick, search_arms.journal(quick, "random", 11))
    assert not (tmp_path / "quick").exists()
