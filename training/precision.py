"""Which number format a run computes in, chosen from what the device does natively, and the loss scaling
fp16 needs.

    precision = choose_precision(torch.device("cuda"), amp="auto")   # Precision("bf16", "...native...")
    with precision.autocast(device): loss = ...
    scaler = StepScaler(precision, device); scaler.backward(loss); scaler.step(optimizer, params, clip=1.0)

bf16 has fp32's exponent range, so it trains without loss scaling; it is only fast where the hardware has
bf16 units (CUDA compute capability 8.0+, Ampere on). On older GPUs `torch.cuda.is_bf16_supported()` is
still true because bf16 is emulated, slower than fp32: those get fp16 with a GradScaler instead. A CPU runs
bf16 where it has bf16 instructions (AMX, AVX512-BF16: oneDNN's bf16 convolutions and matmuls run natively,
about 1.6x an fp32 training step, 1.9x with channels-last), fp32 elsewhere; a model family whose CPU kernels
do not gain says so (`cpu_bf16 = False`) and stays fp32; model 1 instead keeps its LSTMs in fp32 itself
(models.base.fp32_on_cpu) and runs its conv stack in bf16. The
loss, metrics and checkpoints stay fp32 whatever the choice: autocast only changes the matmuls and
convolutions inside it.

`trainer.amp`: "auto" (the default) as above; true forces mixed precision (bf16 on a CPU even without the
instructions); false is fp32 everywhere.

A step whose gradients are not finite is skipped rather than taken: one overflowing batch (seen under CPU
bf16 autocast: one conv layer's gradients at 1e33) would otherwise turn AdamW's moments, then every weight,
into NaN. fp16's GradScaler does this itself; bf16 and fp32 check the gradient norm where reading it back
is free, the CPU (on a GPU that read-back would stall every step).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from training.errors import NonFiniteGradientsError

BF16_MIN_CAPABILITY = (8, 0)  # Ampere: the first CUDA generation with bf16 tensor cores
FP16_MIN_CAPABILITY = (7, 0)  # Volta: fp16 tensor cores; older cards run fp16 slower than fp32
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# A skipped step leaves the weights as they were, so only the batch (and dropout) differs from one try to the
# next: an outlier batch overflows once or twice, but 20 different batches in a row overflowing means the
# weights themselves produce it, and skipping more steps cannot change them.
MAX_SKIPPED_IN_A_ROW = 20


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


@cache
def cpu_native_bf16() -> str | None:
    """The bf16 instructions this CPU has ("AMX", "AVX512-BF16"), or None."""
    probes = (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))
    for name, probe in probes:
        try:
            if getattr(torch.cpu, probe)():
                return name
        except (AttributeError, RuntimeError):  # an older torch: read the kernel's flags instead
            pass
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return None
    return "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else None


def choose_precision(device: torch.device, amp: bool | str, cpu_bf16: bool = True) -> Precision:
    """bf16 where the device has it natively, fp16 (with loss scaling) on a GPU without it, fp32 on a CPU
    without it or when `amp` is false. `cpu_bf16=False`: the model's CPU kernels do not gain from bf16."""
    if amp is False:
        return Precision("fp32", "trainer.amp is false")
    if device.type == "cpu":
        return _cpu_precision(forced=amp is True, model_gains=cpu_bf16)
    if device.type != "cuda":
        return Precision("fp32", f"no mixed precision on {device.type}")
    major, minor = cuda_capability(device)
    if (major, minor) >= BF16_MIN_CAPABILITY:
        return Precision("bf16", f"compute capability {major}.{minor} has native bf16")
    if (major, minor) >= FP16_MIN_CAPABILITY:
        return Precision(
            "fp16", f"compute capability {major}.{minor} only emulates bf16: fp16 autocast with loss scaling"
        )
    return Precision("fp32", f"compute capability {major}.{minor} has no tensor cores: fp32 is fastest")


def _cpu_precision(forced: bool, model_gains: bool) -> Precision:
    if not model_gains:
        return Precision("fp32", "this model's CPU kernels (an LSTM) have no fast bf16 path")
    native = cpu_native_bf16()
    if native:
        return Precision("bf16", f"this CPU has {native}: native bf16 convolutions and matmuls")
    if forced:
        return Precision("bf16", "trainer.amp is true: bf16 on a CPU without bf16 instructions (emulated)")
    return Precision("fp32", "this CPU has no bf16 instructions (AMX, AVX512-BF16)")


class StepScaler:
    """backward + gradient clipping + optimizer step, with fp16's dynamic loss scaling when the precision
    needs it: the loss is multiplied before backward so small gradients survive fp16, the gradients are
    unscaled *before* clipping (a clip on scaled gradients would cut by the wrong norm), and a step whose
    gradients overflowed is skipped while the scale shrinks. For bf16 and fp32 on the CPU a step whose
    gradient norm is not finite is skipped too (counted in `skipped`); on other devices it is a plain step.
    """

    def __init__(self, precision: Precision, device: torch.device):
        self.enabled = precision.scales_loss
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.enabled)
        self.checks_gradients = not self.enabled and device.type == "cpu"
        # not in the checkpoint: a resumed run counts afresh, which at worst allows one more run of skips
        self.skipped, self.skipped_in_a_row = 0, 0

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(
        self, optimizer: torch.optim.Optimizer, params: Iterable[torch.nn.Parameter], clip: float
    ) -> None:
        """Clip and step (GradScaler.step skips the step itself when the unscaled gradients are not finite,
        and update() then halves the scale). That check is read back to the host: fp16's one sync a step
        (fused optimizers would avoid it; bf16, the path of every GPU since Ampere, has none).

        bf16/fp32 on the CPU, where the read-back is free: the global gradient norm (computed even when
        `clip` is 0) is checked and a non-finite one skips the step. On a GPU they do not check: a sync
        every step would stall it, and bf16 there has not shown the overflow; nor is the norm computed
        when clipping is off."""
        if self.checks_gradients:
            # max_norm=inf: the norm alone, the gradients unchanged (get_total_norm is not in torch 2.5)
            norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)
            if not math.isfinite(norm.item()):
                self.skipped += 1
                self.skipped_in_a_row += 1
                return
            self.skipped_in_a_row = 0
            optimizer.step()
            return
        if clip > 0:
            self.scaler.unscale_(optimizer)  # a no-op when disabled
            torch.nn.utils.clip_grad_norm_(params, clip)
        self.scaler.step(optimizer)  # a plain optimizer.step() when disabled
        self.scaler.update()

    def raise_if_diverged(self, epoch: int, step: int) -> None:
        """Raises NonFiniteGradientsError once MAX_SKIPPED_IN_A_ROW steps in a row have been skipped."""
        if self.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
            raise NonFiniteGradientsError(epoch, step, self.skipped_in_a_row)

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.enabled else {}

    def load_state_dict(self, state: dict) -> None:
        if self.enabled and state:
            self.scaler.load_state_dict(state)


__all__ = [
    "BF16_MIN_CAPABILITY", "MAX_SKIPPED_IN_A_ROW", "Precision", "StepScaler", "choose_precision",
    "cpu_native_bf16",
]
