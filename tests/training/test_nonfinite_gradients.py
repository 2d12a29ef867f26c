"""A step whose gradients overflow (inf/NaN, seen under CPU bf16 autocast) is skipped on the CPU instead of
turning AdamW's state and then every weight into NaN; too many in a row end the run as a NaN loss does."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from tests.training._helpers import Recorder, tiny_config
from training import loop as loop_module
from training import precision as precision_module
from training.checkpoint import load_checkpoint
from training.config import load_train_config
from training.errors import NonFiniteGradientsError, NonFiniteLossError
from training.loop import train
from training.mlflow_logging import numeric_metrics
from training.precision import MAX_SKIPPED_IN_A_ROW, Precision, StepScaler

CPU = torch.device("cpu")


def _backward(model: torch.nn.Module, scaler: StepScaler) -> None:
    scaler.backward(model(torch.ones(2, 3)).square().sum())


@pytest.mark.parametrize("mode", ["fp32", "bf16"])
@pytest.mark.parametrize("clip", [1.0, 0.0])
@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_a_step_with_a_non_finite_gradient_is_skipped_on_the_cpu(mode, clip, bad):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    scaler = StepScaler(Precision(mode, "test"), CPU)
    _backward(model, scaler)
    model[0].weight.grad[0, 0] = bad  # one element of one layer, as the overflowing conv had
    scaler.step(optimizer, model.parameters(), clip)
    assert (scaler.skipped, scaler.skipped_in_a_row) == (1, 1)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    assert not optimizer.state, "AdamW's moments never saw the bad gradient"

    optimizer.zero_grad()
    _backward(model, scaler)
    scaler.step(optimizer, model.parameters(), clip)
    assert (scaler.skipped, scaler.skipped_in_a_row) == (1, 0)
    assert all(p.isfinite().all() for p in model.parameters())
    assert not torch.equal(model[0].weight, before[0]), "the next finite step goes through"


def test_the_norm_check_without_clipping_leaves_finite_gradients_alone():
    weight = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    weight.grad = torch.tensor([30.0, 40.0])
    StepScaler(Precision("fp32", "test"), CPU).step(torch.optim.SGD([weight], lr=0.0), [weight], clip=0.0)
    assert weight.grad.tolist() == [30.0, 40.0], "clip 0 is no clipping, norm 50 or not"


def test_only_the_cpu_checks_and_a_gpu_step_stays_as_it_was(monkeypatch):
    """Elsewhere the check would read the norm back every step (a stall on a GPU): no norm is computed
    when clipping is off, and nothing is counted (the meta test in test_gpu_path shows no sync at all)."""
    assert StepScaler(Precision("bf16", "t"), CPU).checks_gradients
    assert not StepScaler(Precision("fp16", "t"), CPU).checks_gradients, "GradScaler skips fp16's itself"
    meta = torch.device("meta")
    scaler = StepScaler(Precision("bf16", "t"), meta)
    assert not scaler.checks_gradients
    norms = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *args, **kw: norms.append(args))
    weight = torch.nn.Parameter(torch.ones(2, device=meta))
    weight.grad = torch.ones(2, device=meta)
    scaler.step(torch.optim.SGD([weight], lr=0.1), [weight], clip=0.0)
    assert norms == [] and scaler.skipped == 0


def test_max_skipped_steps_in_a_row_end_the_run_as_a_nan_loss_does():
    weight = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scaler = StepScaler(Precision("bf16", "test"), CPU)

    def step(grad: float) -> None:
        weight.grad = torch.tensor([grad])
        scaler.step(optimizer, [weight], clip=1.0)

    for _ in range(MAX_SKIPPED_IN_A_ROW - 1):
        step(math.inf)
        scaler.raise_if_diverged(3, 1)
    step(1.0)  # one good step: the run is recovering, the count starts again
    for _ in range(MAX_SKIPPED_IN_A_ROW - 1):
        step(math.nan)
        scaler.raise_if_diverged(3, 2)
    step(math.inf)
    with pytest.raises(NonFiniteGradientsError) as caught:
        scaler.raise_if_diverged(3, 9)
    error = caught.value
    assert isinstance(error, NonFiniteLossError), "the search prunes it with reason nan"
    assert (error.epoch, error.step, error.in_a_row) == (3, 9, MAX_SKIPPED_IN_A_ROW)
    message = str(error)
    assert f"not finite (inf/NaN) for {MAX_SKIPPED_IN_A_ROW} optimizer steps in a row" in message
    assert "epoch 3, step 9" in message
    assert all(advice in message for advice in ("optim.lr", "trainer.grad_clip", "trainer.amp: false"))
    assert scaler.skipped == 2 * MAX_SKIPPED_IN_A_ROW - 1


def _with_inf_gradients(build, steps: set[int]):
    """The model's first parameter gets an all-inf gradient in the backward passes numbered `steps`
    (1-based; one backward a step at the tiny config's batch size)."""

    def builder(config, vocab_size):
        model = build(config, vocab_size)
        calls = [0]

        def hook(grad):
            calls[0] += 1
            return torch.full_like(grad, math.inf) if calls[0] in steps else grad

        next(model.parameters()).register_hook(hook)
        return model

    return builder


# torch's warning when a run's first optimizer step is skipped (as GradScaler's can be) and the per-step
# schedule moves on: the overflowing first step is this test's point
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler")
def test_a_run_survives_one_overflowing_step(overfit_data, tmp_path, monkeypatch, caplog):
    """Before the skip, the overflow's step made AdamW's state NaN and the next loss NaN:
    NonFiniteLossError."""
    monkeypatch.setattr(loop_module, "build_model", _with_inf_gradients(loop_module.build_model, {1}))
    recorder = Recorder()
    trainer = {"epochs": 1, "decode_speed_formulas": 0, "device": "cpu"}  # a GPU step is not checked
    cfg = load_train_config(tiny_config(overfit_data, trainer=trainer))
    with caplog.at_level(logging.WARNING, logger=loop_module.__name__):
        result = train(cfg, tmp_path / "run", callbacks=[recorder])
    row = result.history[0]
    assert row["train/skipped_steps"] == 1 and math.isfinite(row["train/loss"])
    assert numeric_metrics(recorder.epochs[0][1])["train/skipped_steps"] == 1.0, "MLflow logs it"
    assert "epoch 1: skipped 1 optimizer step(s) whose gradients were not finite" in caplog.text
    weights = load_checkpoint(result.best_checkpoint)["model"]
    assert all(w.isfinite().all() for w in weights.values() if w.is_floating_point())


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler")
def test_a_run_whose_gradients_stay_non_finite_ends_with_the_error(overfit_data, tmp_path, monkeypatch):
    monkeypatch.setattr(precision_module, "MAX_SKIPPED_IN_A_ROW", 2)
    every_step = set(range(1, 100))
    monkeypatch.setattr(loop_module, "build_model", _with_inf_gradients(loop_module.build_model, every_step))
    trainer = {"epochs": 2, "decode_speed_formulas": 0, "device": "cpu"}  # a GPU step is not checked
    cfg = load_train_config(tiny_config(overfit_data, trainer=trainer))
    with pytest.raises(NonFiniteGradientsError, match="for 2 optimizer steps in a row, up to epoch 1"):
        train(cfg, tmp_path / "run")
