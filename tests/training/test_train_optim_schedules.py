"""Every registered optimizer and schedule: steps, lowers a loss / shapes the lr as defined, checkpoints."""

from __future__ import annotations

import io
import math
from typing import get_args

import pytest
import torch
from torch import nn

from core.typed_config import ConfigError
from training.config import OptimConfig, OptimizerName, ScheduleConfig, ScheduleName
from training.optim import build_optimizer, list_optimizers, param_groups
from training.schedules import build_schedule, list_schedules


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 1))


def _loss(model: nn.Module) -> torch.Tensor:
    x = torch.linspace(-1, 1, 32).reshape(8, 4)
    return ((model(x).squeeze(1) - x.sum(1)) ** 2).mean()


def test_one_dim_parameters_get_no_weight_decay():
    model = _model()
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and len(decay["params"]) == 2
    assert all(p.dim() == 1 for p in no_decay["params"]) and len(no_decay["params"]) == 4  # 2 biases + norm


@pytest.mark.parametrize("name", list_optimizers())
def test_optimizer_lowers_a_loss_from_its_first_step(name):
    model = _model()
    opt = build_optimizer(model, OptimConfig(name=name, lr=0.01, weight_decay=0.01))
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = _loss(model)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # the first steps must go downhill: Ranger's default rectification warm-up would climb instead
    assert _loss(model).item() < losses[0]
    assert losses[3] < losses[0]
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("name", list_optimizers())
def test_optimizer_state_survives_a_weights_only_checkpoint(name):
    model = _model()
    opt = build_optimizer(model, OptimConfig(name=name))
    for _ in range(7):  # past Ranger's Lookahead sync (k=6)
        opt.zero_grad()
        _loss(model).backward()
        opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    fresh = build_optimizer(model, OptimConfig(name=name))
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


def test_unknown_optimizer_lists_the_valid_names():
    with pytest.raises(ConfigError, match="optim.name: 'lion' is not one of \\['adam', 'adamw', 'radam'"):
        build_optimizer(_model(), OptimConfig(name="lion"))


def test_the_config_accepts_exactly_the_registered_names():
    """One list of names: the config's Literal types and the registries that build them agree."""
    assert sorted(get_args(OptimizerName)) == list_optimizers()
    assert sorted(get_args(ScheduleName)) == list_schedules()


def _lrs(cfg: ScheduleConfig, steps_per_epoch=4, epochs=10, scores=None, mode="max") -> list[float]:
    opt = torch.optim.SGD(_model().parameters(), lr=1.0)
    schedule = build_schedule(opt, cfg, steps_per_epoch, epochs, mode)
    lrs = []
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            schedule.step_batch()
        schedule.step_validation(scores[epoch] if scores else 50.0)
    return lrs


@pytest.mark.parametrize("name", list_schedules())
def test_every_schedule_steps_with_finite_positive_lrs(name):
    lrs = _lrs(ScheduleConfig(name=name, warmup_epochs=1))
    assert len(lrs) == 40 and all(math.isfinite(lr) and lr > 0 for lr in lrs)


def _run(opt, schedule, steps: int, scores) -> list[float]:
    lrs = []
    for step in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step_batch()
        if step % 4 == 3:
            schedule.step_validation(next(scores))
    return lrs


@pytest.mark.parametrize("name", list_schedules())
def test_a_schedule_restored_from_a_weights_only_checkpoint_continues_where_it_stopped(name):
    """What resuming from last.pt relies on: the restored schedule gives the lrs the original would have."""
    cfg = ScheduleConfig(name=name, warmup_epochs=1, step_every=2, plateau_patience=0)
    scores = iter([50.0, 40.0, 30.0, 20.0, 10.0, 5.0] * 4)  # falling: plateau cuts after every validation

    def fresh():
        opt = torch.optim.SGD(_model().parameters(), lr=1.0)
        return opt, build_schedule(opt, cfg, 4, 10)

    opt, schedule = fresh()
    _run(opt, schedule, 13, scores)
    buffer = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "schedule": schedule.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored_opt, restored = fresh()
    restored_opt.load_state_dict(state["optimizer"])
    restored.load_state_dict(state["schedule"])
    expected = _run(opt, schedule, 12, iter([4.0, 3.0, 2.0]))
    got = _run(restored_opt, restored, 12, iter([4.0, 3.0, 2.0]))
    assert got == pytest.approx(expected)
    if name != "constant":  # the only schedule whose fresh start looks the same
        assert got != pytest.approx(_run(*fresh(), 12, iter([4.0, 3.0, 2.0])))


def test_multistep_halves_every_five_epochs_like_the_course():
    lrs = _lrs(ScheduleConfig(name="multistep", step_every=5, gamma=0.5), steps_per_epoch=4, epochs=12)
    assert lrs[0] == lrs[19] == 1.0  # epochs 1-5
    assert lrs[20] == lrs[39] == 0.5  # epochs 6-10
    assert lrs[40] == 0.25


def test_explicit_milestones_override_the_period():
    lrs = _lrs(ScheduleConfig(name="multistep", milestones=[2, 3], gamma=0.1), steps_per_epoch=1, epochs=4)
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.01])


def test_warmup_cosine_rises_then_decays_to_the_floor():
    lrs = _lrs(ScheduleConfig(name="warmup_cosine", warmup_epochs=2, min_lr_ratio=0.1), 5, 10)
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # linear over 10 warmup steps
    assert all(a >= b for a, b in zip(lrs[9:-1], lrs[10:], strict=True))
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_warmup_multistep_warms_then_steps():
    lrs = _lrs(ScheduleConfig(name="warmup_multistep", warmup_epochs=1, step_every=3, gamma=0.5), 4, 6)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[12] == pytest.approx(0.5)


def test_onecycle_peaks_at_pct_start():
    lrs = _lrs(ScheduleConfig(name="onecycle", onecycle_pct_start=0.25), 4, 10)
    assert max(range(len(lrs)), key=lrs.__getitem__) in (9, 10)
    assert lrs[0] == pytest.approx(1.0 / 25) and lrs[-1] < 1e-3


def test_plateau_cuts_the_lr_after_patience_validations_without_gain():
    scores = [10, 20, 20, 20, 20, 20, 20, 20, 20, 20]
    lrs = _lrs(ScheduleConfig(name="plateau", plateau_patience=2, plateau_factor=0.5), 1, 10, scores)
    assert lrs[:5] == [1.0] * 5 and lrs[5] == 0.5


def test_plateau_follows_the_monitored_direction():
    """A run monitoring a loss (trainer.monitor_mode: min) treats a falling value as progress."""
    losses = [5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.8, 0.6, 0.5]
    cfg = ScheduleConfig(name="plateau", plateau_patience=2, plateau_factor=0.5)
    assert _lrs(cfg, 1, 10, losses, mode="min") == [1.0] * 10
    assert _lrs(cfg, 1, 10, losses, mode="max")[-1] < 1.0


def test_unknown_schedule_lists_the_valid_names():
    with pytest.raises(ConfigError, match="'constant', 'multistep', 'onecycle', 'plateau', 'warmup_cosine'"):
        _lrs(ScheduleConfig(name="cyclic"))
