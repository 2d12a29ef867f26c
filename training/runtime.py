"""Device choice, seeding and autocast for the training loop.

    python -c "from training.runtime import resolve_device; print(resolve_device('auto'))"
"""

from __future__ import annotations

import contextlib
import logging
import random

import numpy as np
import torch

logger = logging.getLogger(__name__)


def resolve_device(spec: str) -> torch.device:
    """"auto" -> cuda when available else cpu; "cpu", "cuda", "cuda:N" as given (checked)."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"trainer.device={spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"trainer.device={spec!r} but CUDA is not available here; use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"trainer.device={spec!r} but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    elif device.type != "cpu":
        raise ValueError(f"trainer.device={spec!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16); plain fp32 on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def peak_memory_mb(device: torch.device) -> float:
    if device.type != "cuda":
        return 0.0
    return torch.cuda.max_memory_allocated(device) / 2**20


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def shutdown_loader_iterator(iterator: object) -> None:
    """Stop a DataLoader iterator's worker processes now, not when the garbage collector gets to them
    (an exception's traceback keeps the iterator alive)."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if callable(shutdown):
        shutdown()


__all__ = [
    "autocast",
    "peak_memory_mb",
    "reset_peak_memory",
    "resolve_device",
    "seed_everything",
    "shutdown_loader_iterator",
]
