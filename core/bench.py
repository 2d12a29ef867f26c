"""benchmarks/results.json: one flat JSON object of named figures plus `device`.

Each benchmark module merges its own figures in, so `make bench` can run them one after another and a
partial run keeps the figures it already had.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from core.paths import bench_results_file


def describe_device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}; cpu: {platform.processor() or platform.machine()}"
    return f"cpu: {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def record(figures: dict[str, float | int | str], path: Path | None = None) -> dict:
    path = Path(path or bench_results_file())
    path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update(figures)
    results["device"] = describe_device()
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results
