"""Learning-rate schedules by name: `build_schedule(optimizer, ScheduleConfig, steps_per_epoch, epochs)`.

    python -c "from training.schedules import list_schedules; print(list_schedules())"

Every schedule except `plateau` advances once per optimizer step, so warmups and cosines are smooth and a
fractional `warmup_epochs` works; epoch-based milestones are turned into step counts. The lr factor of the
step-based ones is a pure function of the step (nanoGPT's `get_lr`), wrapped in torch's LambdaLR so that
its state (just the step) goes into checkpoints. `plateau` is torch's ReduceLROnPlateau on the run's
monitored metric (trainer.monitor, val/avg_score by default), stepped after each validation.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR, ReduceLROnPlateau

from core.typed_config import check_choice
from training.config import ScheduleConfig

Factor = Callable[[int], float]


class Schedule:
    """One interface over per-step schedulers and the per-validation plateau scheduler."""

    def __init__(self, scheduler: LRScheduler | ReduceLROnPlateau, per_step: bool):
        self.scheduler = scheduler
        self.per_step = per_step

    def step_batch(self) -> None:
        if self.per_step:
            self.scheduler.step()

    def step_validation(self, monitored: float) -> None:
        if not self.per_step:
            self.scheduler.step(monitored)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


def _milestone_steps(cfg: ScheduleConfig, steps_per_epoch: int, epochs: int) -> list[int]:
    if cfg.milestones:
        epochs_at = sorted(cfg.milestones)
    else:
        if cfg.step_every < 1:
            raise ValueError(f"schedule.step_every={cfg.step_every} must be >= 1 (or set milestones)")
        epochs_at = list(range(cfg.step_every, epochs + 1, cfg.step_every))
    return [m * steps_per_epoch for m in epochs_at]


def _warmup_steps(cfg: ScheduleConfig, steps_per_epoch: int) -> int:
    return max(0, round(cfg.warmup_epochs * steps_per_epoch))


def _multistep_factor(cfg: ScheduleConfig, steps_per_epoch: int, epochs: int, warmup: int) -> Factor:
    milestones = _milestone_steps(cfg, steps_per_epoch, epochs)

    def factor(step: int) -> float:
        decay = cfg.gamma ** bisect.bisect_right(milestones, step)
        return decay * min(1.0, (step + 1) / warmup) if warmup else decay

    return factor


def _cosine_factor(cfg: ScheduleConfig, steps_per_epoch: int, epochs: int, warmup: int) -> Factor:
    total = max(1, steps_per_epoch * epochs)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _lambda(optimizer, factor: Factor) -> Schedule:
    return Schedule(LambdaLR(optimizer, factor), per_step=True)


def _build_multistep(optimizer, cfg, steps_per_epoch, epochs, mode) -> Schedule:
    return _lambda(optimizer, _multistep_factor(cfg, steps_per_epoch, epochs, warmup=0))


def _build_warmup_multistep(optimizer, cfg, steps_per_epoch, epochs, mode) -> Schedule:
    warmup = _warmup_steps(cfg, steps_per_epoch)
    return _lambda(optimizer, _multistep_factor(cfg, steps_per_epoch, epochs, warmup))


def _build_warmup_cosine(optimizer, cfg, steps_per_epoch, epochs, mode) -> Schedule:
    warmup = _warmup_steps(cfg, steps_per_epoch)
    return _lambda(optimizer, _cosine_factor(cfg, steps_per_epoch, epochs, warmup))


def _build_constant(optimizer, cfg, steps_per_epoch, epochs, mode) -> Schedule:
    return _lambda(optimizer, lambda step: 1.0)


def _build_onecycle(optimizer, cfg, steps_per_epoch, epochs, mode) -> Schedule:
    max_lrs = [group["lr"] for group in optimizer.param_groups]
    scheduler = OneCycleLR(
        optimizer,
        max_lr=max_lrs,
        total_steps=max(2, steps_per_epoch * epochs),
        pct_start=cfg.onecycle_pct_start,
        div_factor=cfg.onecycle_div_factor,
        final_div_factor=cfg.onecycle_final_div_factor,
        # cycling beta1 against the lr assumes Adam-like or momentum optimizers; keep betas fixed instead.
        cycle_momentum=False,
    )
    return Schedule(scheduler, per_step=True)


def _build_plateau(optimizer, cfg, steps_per_epoch, epochs, mode) -> Schedule:
    scheduler = ReduceLROnPlateau(optimizer, mode=mode, factor=cfg.plateau_factor,
                                  patience=cfg.plateau_patience)
    return Schedule(scheduler, per_step=False)


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "multistep": _build_multistep,
    "warmup_multistep": _build_warmup_multistep,
    "warmup_cosine": _build_warmup_cosine,
    "onecycle": _build_onecycle,
    "plateau": _build_plateau,
    "constant": _build_constant,
}


def list_schedules() -> list[str]:
    return sorted(SCHEDULES)


def build_schedule(
    optimizer: torch.optim.Optimizer,
    cfg: ScheduleConfig,
    steps_per_epoch: int,
    epochs: int,
    mode: str = "max",
) -> Schedule:
    """`mode` is the direction of the monitored metric `plateau` steps on (trainer.monitor_mode)."""
    builder = SCHEDULES[check_choice("schedule.name", cfg.name, list_schedules())]
    return builder(optimizer, cfg, max(1, steps_per_epoch), max(1, epochs), mode)


__all__ = ["SCHEDULES", "Schedule", "build_schedule", "list_schedules"]
