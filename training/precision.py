"""Which number format a run computes in, chosen from what the device does natively, and the loss scaling
fp16 needs.

    precision = choose_precision(torch.device("cuda"), amp=True)   # Precision("bf16", "...native...")
    with precision.autocast(device): loss = ...
    scaler = StepScaler(precision, device); scaler.backward(loss); scaler.step(optimizer, params, clip=1.0)

bf16 has fp32's exponent range, so it trains without loss scaling; it is only fast where the hardware has
bf16 units (CUDA compute capability 8.0+, Ampere on). On older GPUs `torch.cuda.is_bf16_supported()` is
still true because bf16 is emulated, slower than fp32: those get fp16 with a GradScaler instead. The CPU
runs fp32 (its bf16 choice belongs to the CPU `amp: auto` work). The loss, metrics and checkpoints stay
fp32 whatever the choice: autocast only changes the matmuls and convolutions inside it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import torch

BF16_MIN_CAPABILITY = (8, 0)  # Ampere: the first CUDA generation with bf16 tensor cores
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    mode: str  # "bf16" | "fp16" | "fp32"
    reason: str  # one line for the run's log: why this mode here

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES.get(self.mode)

    @property
    def scales_loss(self) -> bool:
        return self.mode == "fp16"

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def cuda_capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def choose_precision(device: torch.device, amp: bool) -> Precision:
    """bf16 where the device has it natively, fp16 (with loss scaling) on a GPU without it, fp32 on the CPU
    or when `amp` is off."""
    if not amp:
        return Precision("fp32", "trainer.amp is off")
    if device.type != "cuda":
        return Precision("fp32", f"mixed precision is used on CUDA only; {device.type} runs fp32")
    major, minor = cuda_capability(device)
    if (major, minor) >= BF16_MIN_CAPABILITY:
        return Precision("bf16", f"compute capability {major}.{minor} has native bf16")
    return Precision(
        "fp16", f"compute capability {major}.{minor} only emulates bf16: fp16 autocast with loss scaling"
    )


class StepScaler:
    """backward + gradient clipping + optimizer step, with fp16's dynamic loss scaling when the precision
    needs it: the loss is multiplied before backward so small gradients survive fp16, the gradients are
    unscaled *before* clipping (a clip on scaled gradients would cut by the wrong norm), and a step whose
    gradients overflowed is skipped while the scale shrinks. For bf16 and fp32 it is a plain step."""

    def __init__(self, precision: Precision, device: torch.device):
        self.enabled = precision.scales_loss
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.enabled)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(
        self, optimizer: torch.optim.Optimizer, params: Iterable[torch.nn.Parameter], clip: float
    ) -> None:
        """Clip and step (GradScaler.step skips the step itself when the unscaled gradients are not finite,
        and update() then halves the scale)."""
        if clip > 0:
            self.scaler.unscale_(optimizer)  # a no-op when disabled
            torch.nn.utils.clip_grad_norm_(params, clip)
        self.scaler.step(optimizer)  # a plain optimizer.step() when disabled
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.enabled else {}

    def load_state_dict(self, state: dict) -> None:
        if self.enabled and state:
            self.scaler.load_state_dict(state)


__all__ = ["BF16_MIN_CAPABILITY", "Precision", "StepScaler", "choose_precision"]
