"""Fixtures for the search tests: a fast fake training loop and small study specs.

The fake stands in for training.loop.train (tests pass it as `train_fn=` to search.cli.main or run_worker),
reports a learning curve through the same callbacks the real loop uses, and can raise OOM, NaN or any
exception on demand.
"""

from __future__ import annotations

import math
import textwrap
import time
from pathlib import Path

import pytest
import torch

from benchmarks.load_worker import SleptResult as FakeResult  # the result shape training.loop.train returns
from training.errors import NonFiniteLossError

FAKE_SPEC = """
# fake: a tiny space for harness tests (the training loop is replaced by a fake)
dataset: fake-data
base:
  model: {kind: transformer}
  trainer: {epochs: 4, batch_size: 8}
space:
  model.kind: {choices: [transformer, rnn]}
  model.d_model: {choices: [32, 48, 64], when: {model.kind: transformer}}
  model.nhead: {choices: [2, 4, 6], when: {model.kind: transformer}}
  model.decoder_hidden: {choices: [64, 128], when: {model.kind: rnn}}
  optim.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
constraints: ["model.kind != 'transformer' or model.d_model % model.nhead == 0"]
budget: {n_trials: 8, max_epochs: 4}
sampler: {name: tpe, seed: 1, n_startup_trials: 3}
pruner: {name: successive_halving, min_resource: 1, reduction_factor: 2}
enqueue:
  - {label: baseline, params: {model.kind: transformer, model.d_model: 64, model.nhead: 4, optim.lr: 1.0e-2}}
"""


def fake_score(config, epoch: int) -> float:
    """A curve that rises with epochs and peaks at lr = 1e-2."""
    return max(0.0, 80.0 - 15.0 * abs(math.log10(config.optim.lr) + 2.0)) * (1 - 0.5**epoch)


def fake_decode_ms(config) -> float:
    """Wider models decode slower: 8, 12, 16 ms for d_model 32, 48, 64; 16, 32 for the RNN's widths."""
    width = config.model.d_model if config.model.kind == "transformer" else config.model.decoder_hidden
    return width / 4.0


class FakeTraining:
    """Callable with training.loop.train's signature; `behaviour(config) -> str` picks what happens."""

    def __init__(self, behaviour=lambda config: "ok", epoch_seconds: float = 0.0, write_last: bool = False):
        self.behaviour = behaviour
        self.epoch_seconds = epoch_seconds
        self.write_last = write_last  # write a loadable last.pt after each epoch, as the real loop does
        self.calls: list = []
        self.resumes: list = []  # (resume flag, first epoch trained) per call

    def __call__(self, config, out_dir, *, callbacks, resume_from=None):
        self.calls.append(config)
        what = self.behaviour(config)
        if what == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if what == "cublas_oom":  # cuBLAS's own allocation failure arrives as a plain RuntimeError
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
        if what == "sticky":
            raise RuntimeError("CUDA error: device-side assert triggered\nCompile with TORCH_USE_CUDA_DSA")
        if what == "boom":
            raise ValueError("boom: a bug in the training code")
        if what == "interrupt":
            raise KeyboardInterrupt
        last = Path(out_dir) / "last.pt"
        start, history = 1, []
        if resume_from is not None and Path(resume_from).exists():
            state = torch.load(resume_from, weights_only=True)
            start, history = int(state["epoch"]) + 1, list(state["history"])
        self.resumes.append((resume_from is not None, start))
        best, info = {}, {"start_epoch": start, "history": history}
        for cb in callbacks:  # as the real loop does: samples reach callbacks through `info`, not metrics
            cb.on_train_start(config, info)
        for epoch in range(start, config.trainer.epochs + 1):
            if what == "oom_at_3" and epoch == 3:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            if what == "nan":  # before the first report, so the pruner cannot get there first
                raise NonFiniteLossError(epoch, 3, float("nan"))
            time.sleep(self.epoch_seconds)
            score = fake_score(config, epoch)
            metrics = {
                "train/loss": 3.0 / epoch,
                "val/loss": 3.5 / epoch,
                "val/bleu4": score,
                "val/exact_match": score / 2,
                "val/edit_score": score * 1.2,
                "val/avg_score": score,
                "lr": config.optim.lr,
                "images_per_s": 100.0,
                "gpu_peak_mem_mb": 0.0,
                "epoch_time_s": 0.01,
            }
            info["sample_predictions"] = [{"id": "a", "reference": "x ^ 2", "prediction": f"x ^ {epoch}"}]
            if self.write_last:
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                history = [{"epoch": e, "val/avg_score": fake_score(config, e)} for e in range(1, epoch + 1)]
                torch.save({"model": {}, "config": {}, "epoch": epoch, "history": history}, last)
            for cb in callbacks:
                cb.on_epoch_end(epoch, metrics)
            if score >= best.get("val/avg_score", -1):
                best = dict(metrics)
        ms = fake_decode_ms(config)
        return FakeResult(
            best_metrics=best, decode_speed={"decode/ms_per_formula": ms, "decode/formulas_per_s": 1e3 / ms}
        )


@pytest.fixture(scope="session")
def shared_mlflow_uri(tmp_path_factory):
    """One MLflow store for the fake-objective tests: creating a fresh SQLite store costs ~5 s each time."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def fake_study(isolated_home, monkeypatch, request, shared_mlflow_uri):
    """Writes studies/<name>.yaml (a name unique to the test) into the isolated home and returns the
    name; dataset hashing is stubbed (no data needed)."""
    name = "fake-" + request.node.name.removeprefix("test_")[:40].replace("[", "-").rstrip("]")
    studies = isolated_home / "studies"
    studies.mkdir(parents=True, exist_ok=True)
    (studies / f"{name}.yaml").write_text(textwrap.dedent(FAKE_SPEC), encoding="utf-8")
    monkeypatch.setattr("search.study.studies.dataset_hash", lambda dataset: "fakehash")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_mlflow_uri)
    return name


@pytest.fixture
def fake_training():
    """Makes a FakeTraining for a test to pass as `train_fn=`."""

    def make(behaviour=lambda config: "ok", write_last: bool = False) -> FakeTraining:
        return FakeTraining(behaviour, write_last=write_last)

    return make
