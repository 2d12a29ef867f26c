"""Device choice, seeding, autocast and the host-side settings (loader workers, cuDNN autotuning) for the
training loop.

    python -c "from training.runtime import resolve_device; print(resolve_device('auto'))"
"""

from __future__ import annotations

import contextlib
import logging
import os
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
    """Inference autocast in the precision training.precision chooses for `device` (bf16 where native, fp16
    on older GPUs, fp32 on the CPU): validation, predict and the decode-speed timing all decode this way."""
    from training.precision import choose_precision

    return choose_precision(device, enabled).autocast(device)


# Above this many distinct training image sizes, cuDNN's per-shape autotuning costs more than it saves:
# each size comes as full, remainder and micro-batches, plus validation's batches, and every trial process
# tunes them all again; auto buckets give 70-90 sizes, and the trials Hyperband cuts after an epoch or two
# would pay most of it.
CUDNN_BENCHMARK_MAX_SHAPES = 12


def configure_cudnn(device: torch.device, n_shapes: int) -> bool:
    """Turn cuDNN autotuning on only for a run with few image sizes; returns whether it is on."""
    if device.type != "cuda":
        return False
    on = n_shapes <= CUDNN_BENCHMARK_MAX_SHAPES
    torch.backends.cudnn.benchmark = on
    return on


def usable_cores() -> int:
    """Cores this process may use: OMP_NUM_THREADS when a launcher split the machine between workers, else
    the CPU affinity mask (a container's or Slurm's share), else every core."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        return int(threads)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


MAX_LOADER_WORKERS = 8


def loader_workers(setting: int | None, device: torch.device) -> int:
    """`data.num_workers`, or when unset: on CUDA, this process's cores less the one that drives the GPU
    (so augmentation, collation and pinning overlap the GPU's work); on the CPU none, since loader workers
    would take cores from the training threads."""
    if setting is not None:
        return setting
    if device.type != "cuda":
        return 0
    return max(1, min(MAX_LOADER_WORKERS, usable_cores() - 1))


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
    "CUDNN_BENCHMARK_MAX_SHAPES",
    "autocast",
    "configure_cudnn",
    "loader_workers",
    "usable_cores",
    "peak_memory_mb",
    "reset_peak_memory",
    "resolve_device",
    "seed_everything",
    "shutdown_loader_iterator",
]
