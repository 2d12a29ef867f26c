"""One optimizer step over a batch, without waiting for the device.

    loss = train_step(model, batch, optimizer=opt, scaler=scaler, ...)   # a 0-dim tensor on the device
    meter.add(loss)                                                      # read back every k steps

Everything the host decides (micro-batch bounds, target trimming, token counts, the mixup draw) is
computed from the batch while it is still on the CPU, so the step queues its kernels and returns: a GPU
never idles while Python reads a number back. `LossMeter` reads the summed loss once per interval; the
non-finite check happens there (on the CPU the interval is one step, which costs nothing). Non-finite
gradients under a finite loss are the scaler's (training.precision.StepScaler): on the CPU it skips such a
step instead of letting it turn the optimizer's state into NaN, so one overflowing batch costs one step,
not the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from data_prep.augment import AugmentConfig, mixup_batch
from models.base import ImageToLatexModel
from training.errors import NonFiniteLossError
from training.losses import count_tokens, token_loss_sum, trim_targets
from training.precision import Precision, StepScaler

CUDA_SYNC_EVERY = 25  # steps between loss read-backs on a GPU (also the progress bar's refresh)


@dataclass
class StepSetup:
    """What a step needs besides the model and the batch (built once per run)."""

    device: torch.device
    precision: Precision
    scaler: StepScaler
    micro_batch: int
    max_output_len: int | None
    label_smoothing: float
    grad_clip: float
    augment: AugmentConfig
    mix_generator: torch.Generator


def train_step(
    model: ImageToLatexModel, batch, optimizer: torch.optim.Optimizer, s: StepSetup
) -> torch.Tensor:
    """One optimizer step over the whole batch in micro-batches (losses summed per token of the whole batch,
    so accumulation changes memory, not the step); returns the batch's loss on the device. A non-finite
    loss is caught by LossMeter at its next read-back; the run then ends, so the step it spoilt is moot."""
    images, targets = batch.images, trim_targets(batch.targets, s.max_output_len)
    mixed = mixup_batch(images, targets, s.augment, s.mix_generator)
    if mixed is None:
        parts = [(targets, 1.0)]
    else:
        images, parts = mixed.images, [(mixed.targets_a, mixed.lam), (mixed.targets_b, 1.0 - mixed.lam)]
    norms = [max(1, count_tokens(tgt)) for tgt, _ in parts]
    total = torch.zeros((), device=s.device)
    for lo, hi in micro_batches(len(images), s.micro_batch):
        chunk = images[lo:hi].to(s.device, non_blocking=True)  # (b, 1, H, W)
        with s.precision.autocast(s.device):
            memory = model.encode(chunk)  # (b, S, E)
            loss = 0.0
            for (tgt, weight), norm in zip(parts, norms, strict=True):
                tgt = trim_targets(tgt[lo:hi], s.max_output_len).to(s.device, non_blocking=True)
                logits = model.decode(memory, tgt[:, :-1])  # (b, T-1, V)
                loss = loss + weight * token_loss_sum(logits, tgt[:, 1:], s.label_smoothing) / norm
        s.scaler.backward(loss)
        total += loss.detach()
    s.scaler.step(optimizer, model.parameters(), s.grad_clip)
    optimizer.zero_grad(set_to_none=True)
    return total


def micro_batches(n: int, micro: int) -> list[tuple[int, int]]:
    """(start, stop) of each micro-batch; a lone last image joins the one before it, since BatchNorm cannot
    train on a single image whose features are 1x1 (a deep encoder cut of a small crop)."""
    bounds = [(lo, min(lo + micro, n)) for lo in range(0, n, micro)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def sync_interval(device: torch.device) -> int:
    """Steps between loss read-backs: on the CPU a read-back costs nothing, so every step is checked."""
    return CUDA_SYNC_EVERY if device.type == "cuda" else 1


class LossMeter:
    """Sums step losses on the device and reads them back every `every` steps (one host sync then)."""

    def __init__(self, device: torch.device, every: int | None = None):
        self.every = every or sync_interval(device)
        self.window = torch.zeros((), device=device)
        self.in_window = 0
        self.total, self.steps = 0.0, 0  # over the read-back steps

    def add(self, loss: torch.Tensor, epoch: int, step: int, last_step: bool = False) -> float | None:
        """Adds a step's loss; at a read-back (every `every` steps, and at `last_step`) returns the window's
        mean loss, else None."""
        self.window += loss
        self.in_window += 1
        if self.in_window < self.every and not last_step:
            return None
        return self.flush(epoch, step)

    def flush(self, epoch: int, step: int) -> float | None:
        """Reads the window back (the one host sync of the window); raises NonFiniteLossError when its loss
        is not finite."""
        if not self.in_window:
            return None
        value = self.window.item()
        if not math.isfinite(value):
            raise NonFiniteLossError(epoch, step, value)
        mean = value / self.in_window
        self.total, self.steps = self.total + value, self.steps + self.in_window
        self.window.zero_()
        self.in_window = 0
        return mean

    @property
    def mean(self) -> float:
        return self.total / max(1, self.steps)


__all__ = ["CUDA_SYNC_EVERY", "LossMeter", "StepSetup", "micro_batches", "sync_interval", "train_step"]
