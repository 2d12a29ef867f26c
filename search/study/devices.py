"""Whether a study should run on a GPU, why none is usable when it should, and how workers share one.

    python -m search study transformer                # a GPU-sized spec: stops with the reason when no GPU
    python -m search study transformer --device cpu   # the user's choice: runs on the CPU
    python -m search study smoke --device cuda        # must run on a GPU

A GPU-sized spec (one with a `<name>-cpu` sibling, or a base `trainer.device` of cuda) silently trained on
the CPU would take days where the user expected hours; saying which of the usual causes it is (a CPU-only
torch wheel, CUDA_VISIBLE_DEVICES hiding the GPUs, no driver) saves the hunt.
"""

from __future__ import annotations

import gc
import logging
import os

from search.spec.parse import StudySpec, spec_path

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def is_gpu_spec(spec: StudySpec) -> bool:
    return _pins_cuda(spec) or _has_cpu_profile(spec.name)


def _pins_cuda(spec: StudySpec) -> bool:
    return str((spec.base.get("trainer") or {}).get("device", "auto")).lower().startswith("cuda")


def _has_cpu_profile(name: str) -> bool:
    if name.endswith("-cpu"):
        return False
    try:
        spec_path(f"{name}-cpu")
    except FileNotFoundError:
        return False
    return True


def gpu_problem() -> str | None:
    """Why this process sees no usable CUDA device (None when it sees one)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return None
    if torch.version.cuda is None:
        return f"the installed torch {torch.__version__} is a CPU-only build (install a CUDA wheel of torch)"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    try:
        torch.cuda.init()  # raises with the driver's own reason ("Found no NVIDIA driver ...")
    except Exception as exc:
        return f"CUDA cannot start: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return f"no CUDA device is visible (CUDA_VISIBLE_DEVICES={visible!r})"


def require_device(spec: StudySpec, device: str) -> str | None:
    """Apply `--device` for this process and the workers it starts; returns the reason to stop, if any.

    cpu hides the GPUs (so every trial's `trainer.device: auto` resolves to the CPU); cuda, or auto on a
    GPU-sized spec, needs a usable GPU."""
    if device == "cpu":
        if _pins_cuda(spec):  # hiding the GPUs would only make every trial fail in resolve_device
            return (f"study {spec.name} sets trainer.device: cuda in its base; set it to auto to run it on "
                    "the CPU with --device cpu")
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before any CUDA call: inherited by the workers too
        return None
    if device == "auto" and not is_gpu_spec(spec):
        return None
    problem = gpu_problem()
    if problem is None:
        return None
    why = f"study {spec.name} is sized for a GPU" if device == "auto" else "--device cuda was asked for"
    if _pins_cuda(spec):
        return f"{why} and none is usable here: {problem} (its base sets trainer.device: cuda)"
    cpu = f"make study NAME={spec.name}-cpu, or " if _has_cpu_profile(spec.name) else ""
    return f"{why} and none is usable here: {problem}. On the CPU: {cpu}--device cpu (make study DEVICE=cpu)"


__all__ = ["DEVICE_CHOICES", "gpu_problem", "is_gpu_spec", "require_device"]


GPU_SHARE_ENV = "SEARCH_GPU_SHARED_BY"  # how many workers share this worker's GPU (set by launch)
MEMORY_HEADROOM = 0.95  # of a GPU's memory, split between its workers (the rest: CUDA contexts, cuDNN)


def gpu_share() -> int:
    """How many workers of this study share this process's GPU (1: it has the GPU alone)."""
    value = os.environ.get(GPU_SHARE_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def limit_gpu_memory() -> float | None:
    """Cap this process's share of its GPU's memory when workers share it; returns the fraction set."""
    share = gpu_share()
    if share <= 1:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    fraction = MEMORY_HEADROOM / share
    torch.cuda.set_per_process_memory_fraction(fraction)
    log.info("sharing the GPU with %d other worker(s): this one may use %.0f %% of its memory", share - 1,
             100 * fraction)
    return fraction


def visible_gpus() -> list[str]:
    """The device ids a child should see, honouring a CUDA_VISIBLE_DEVICES already set."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return []
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def release_gpu_memory() -> None:
    """Free CUDA tensors held by reference cycles (a finished trial's, or a failed step's) before the next
    allocation. Skipped on CPU: a full collection costs about a second in a process holding torch and
    MLflow, and there is no cache to empty."""
    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
