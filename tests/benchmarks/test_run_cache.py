"""The search benchmark reuses a stored run or test score only for the same config, seed, dataset content
and code: a result from older code or other data is trained or scored again, never served as fresh."""

from __future__ import annotations

import dataclasses
import json
import os
import time

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
    plan = dataclasses.replace(plan, train_fn=_no_training)
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


def _diverging_after(validated_epochs: int):
    """training.loop.train's stand-in: `validated_epochs` epochs (best.pt at the last), then a NaN loss."""
    import torch

    from training.errors import NonFiniteLossError

    def train(config, out_dir):
        if validated_epochs:
            out_dir.mkdir(parents=True, exist_ok=True)
            torch.save({"epoch": validated_epochs, "metrics": {"val/avg_score": 12.5}}, out_dir / "best.pt")
        raise NonFiniteLossError(validated_epochs + 1, 112, float("nan"))

    return train


@pytest.mark.parametrize("validated_epochs", [4, 0])
def test_a_run_whose_loss_turns_nan_counts_as_what_it_reached(plan, monkeypatch, validated_epochs):
    """The course's config diverged in bf16 at epoch 5: the bench records that run (its best.pt from before,
    the epochs it spent) instead of stopping, and does not train it again on the next call."""
    config = {"trainer": {"seed": 0, "epochs": 8}, "optim": {"lr": 4e-4}}
    plan = dataclasses.replace(plan, train_fn=_diverging_after(validated_epochs))
    scored = []
    monkeypatch.setattr(search_arms, "score_test", lambda plan, path: scored.append(path) or 9.5)
    out = plan.work / "course_best" / "retrain-seed1"
    if not validated_epochs:  # an earlier run's best.pt in the same folder must not pass for this run's
        out.mkdir(parents=True)
        (out / "best.pt").write_bytes(b"an older run's weights")
        os.utime(out / "best.pt", (time.time() - 3600, time.time() - 3600))
    record = search_arms.train_once(plan, "course_best", "retrain", config, seed=1, test=True)
    assert record["diverged_at_epoch"] == validated_epochs + 1 and record["epochs"] == validated_epochs + 1
    if validated_epochs:
        assert record["best_val_avg"] == 12.5 and record["test_avg"] == 9.5
        assert scored == [out / "best.pt"]
    else:  # nothing was validated: nothing to score, and no stale best.pt taken for this run's
        assert record["best_val_avg"] is None and record["test_avg"] is None and not scored
    plan = dataclasses.replace(plan, train_fn=_no_training)
    assert search_arms.train_once(plan, "course_best", "retrain", config, seed=1, test=True) == record
