"""benchmarks/results.json: one flat JSON object of named figures plus `device`.

Each benchmark module merges its own figures in, so `make bench` can run them one after another and a
partial run keeps the figures it already had.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from core.paths import bench_results_file


def cpu_name() -> str:
    """The CPU's model name and whether it has bf16 instructions: figures from an AVX2-only CPU and from
    a Xeon with AMX differ by 2x before any code does, so every result names its machine."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)  # one CPU's: alike
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    name, flags = fields.get("model name", platform.machine()), set(fields.get("flags", "").split())
    bf16 = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags]
    return f"{name} ({', '.join(bf16) if bf16 else 'no bf16 instructions'})"


def describe_device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}; cpu: {cpu_name()}"
    return f"cpu: {cpu_name()} x{torch.get_num_threads()} threads"


def record(figures: dict[str, float | int | str], path: Path | None = None) -> dict:
    path = Path(path or bench_results_file())
    path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update(figures)
    results["device"] = describe_device()
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results
