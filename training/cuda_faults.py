"""Which exceptions from a training run mean "out of memory" and which leave the GPU unusable.

    is_out_of_memory(exc)      # retry smaller, or prune as "oom": the config is too big, not broken
    is_sticky_cuda_error(exc)  # the CUDA context is dead: every later kernel in this process fails too

Only the caching allocator raises `torch.cuda.OutOfMemoryError`; cuBLAS and cuDNN allocate their own
workspaces and report a failure as a plain `RuntimeError` naming their status code, and the CPU allocator
raises a `RuntimeError` too. After a device-side assert or an illegal memory access the process's CUDA
context is corrupt: no later trial can run in it, so the worker must end and be replaced.
"""

from __future__ import annotations

import torch

OOM_MARKERS = (
    "out of memory",  # CUDA's own message, in OutOfMemoryError and in "CUDA error: out of memory"
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUBLAS_STATUS_NOT_INITIALIZED",  # cublasCreate's usual report when no memory is left for its handle
    "CUDNN_STATUS_ALLOC_FAILED",
    "DefaultCPUAllocator: can't allocate memory",
)
STICKY_MARKERS = (
    "device-side assert triggered",
    "an illegal memory access was encountered",
    "an illegal instruction was encountered",
    "misaligned address",
    "unspecified launch failure",
    "uncorrectable ECC error",
    "CUDA error: unknown error",
)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(marker in str(exc) for marker in OOM_MARKERS)


def is_sticky_cuda_error(exc: BaseException) -> bool:
    if not isinstance(exc, RuntimeError) or is_out_of_memory(exc):
        return False
    return any(marker in str(exc) for marker in STICKY_MARKERS)


__all__ = ["OOM_MARKERS", "STICKY_MARKERS", "is_out_of_memory", "is_sticky_cuda_error"]
