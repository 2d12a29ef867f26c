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


def autocast(
    device: torch.device, amp: bool | str = "auto", model: torch.nn.Module | None = None
) -> contextlib.AbstractContextManager:
    """Inference autocast in the precision training.precision chooses for `device` and `model`'s family:
    validation, predict and the decode-speed timing all run this way (models.decoding keeps the CPU's
    token-by-token decoder steps in fp32 under it)."""
    from training.precision import choose_precision

    return choose_precision(device, amp, getattr(model, "cpu_bf16", True)).autocast(device)


def to_device(model: torch.nn.Module, device: torch.device, channels_last: bool = True) -> torch.nn.Module:
    """The model on `device`, its convolution weights channels-last unless asked not to: the layout
    oneDNN's and cuDNN's fast kernels (bf16, tensor cores) work in; the (B, 1, H, W) input is channels-last
    as it is. An fp32 run (`trainer.amp: false`) keeps the default layout: it is the baseline."""
    if not channels_last:
        return model.to(device)
    return model.to(device=device, memory_format=torch.channels_last)


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


def machine_cores() -> int:
    """The cores this process may run on: the CPU affinity mask (a container's or Slurm's share), which
    `os.cpu_count()` ignores."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def usable_cores() -> int:
    """This process's share: OMP_NUM_THREADS when a launcher split the machine between workers (never
    more than the affinity mask allows), else the affinity mask."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        return min(int(threads), machine_cores())
    return machine_cores()


MAX_LOADER_WORKERS = 8
SHM_PER_LOADER_WORKER = 128 * 2**20  # two prefetched float32 batches of a large bucket, with room


def shared_memory_bytes() -> int | None:
    """Free space in /dev/shm, where loader workers hand batches over (None where there is none)."""
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def loader_workers(setting: int | None, device: torch.device) -> int:
    """`data.num_workers`, or when unset: on CUDA, this process's cores less the one that drives the GPU
    (so augmentation, collation and pinning overlap the GPU's work), as many as /dev/shm has room for (a
    container's default 64 MB holds none: the workers would die with a bus error); on the CPU none, since
    loader workers would take cores from the training threads."""
    if setting is not None:
        return setting
    if device.type != "cuda":
        return 0
    workers = max(1, min(MAX_LOADER_WORKERS, usable_cores() - 1))
    shm = shared_memory_bytes()
    if shm is not None and shm < workers * SHM_PER_LOADER_WORKER:
        room = int(shm // SHM_PER_LOADER_WORKER)
        logger.warning("/dev/shm has %d MB free: %d loader worker(s) instead of %d (docker: --shm-size=2g)",
                       shm // 2**20, room, workers)
        workers = room
    return workers


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
    "to_device",
    "loader_workers",
    "machine_cores",
    "usable_cores",
    "peak_memory_mb",
    "reset_peak_memory",
    "resolve_device",
    "seed_everything",
    "shutdown_loader_iterator",
]
