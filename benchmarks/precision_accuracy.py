"""python -m benchmarks precision: does the fast mode (bf16 autocast + channels-last) cost accuracy?

The search benchmark's best config (benchmarks/search_results.json: tpe_hyperband's best trial, 8 epochs on
`synth-cpu`) is trained with seeds 1 and 2, once in fp32 (`trainer.amp: false`) and once in the mode
`trainer.amp: auto` picks on this machine (bf16 + channels-last on a CPU with AMX/AVX512-BF16). Recorded in
benchmarks/results.json:
- `fast_vs_fp32_val_avg_delta`: mean best val avg of the fast runs less that of the fp32 runs (target:
  within ±1 point);
- `fast_vs_fp32_train_speedup`: mean training img/s (loader included, every epoch) fast / fp32;
- `fast_mode`, and per run `precision_runs` (seed, mode, best val avg, img/s, wall seconds).
Each finished run is kept in runs/precision-accuracy/<mode>-seed<k>.json with the hash of its config and
of the code (a change to how a mode trains makes its runs stale), so a cut run resumes at the next run;
both modes train the same number of epochs on the same data and seeds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from typing import Any

import torch

from benchmarks.search_arms import source_hash
from core.bench import record
from core.paths import REPO_ROOT, runs_dir
from core.typed_config import merge
from search.study.studies import code_version
from training.config import load_train_config
from training.loop import train
from training.precision import choose_precision

SEEDS = (1, 2)
MODES = {"fp32": False, "fast": "auto"}


def best_config() -> dict[str, Any]:
    results = json.loads((REPO_ROOT / "benchmarks" / "search_results.json").read_text())
    return results["strategies"]["tpe_hyperband"]["best_config"]


def _run(mode: str, seed: int, base: dict[str, Any], train_fn=train) -> dict[str, Any]:
    data = merge(base, {"trainer": {"seed": seed, "amp": MODES[mode], "progress": False,
                                    "decode_speed_formulas": 0}})
    keyed = {"config": data, "code": source_hash()}
    sha = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]
    done = runs_dir() / "precision-accuracy" / f"{mode}-seed{seed}.json"
    if done.exists():
        kept = json.loads(done.read_text())
        if kept.get("config_sha") == sha:
            print(f"[precision] {mode} seed {seed}: kept from {done}", flush=True)
            return kept
    config = load_train_config(data)
    precision = choose_precision(torch.device("cpu"), config.trainer.amp)  # the model family: transformer
    print(f"[precision] training {mode} ({precision.mode}) seed {seed}", flush=True)
    start = time.perf_counter()
    result = train_fn(config, done.with_suffix(""))
    rates = [row["images_per_s"] for row in result.history]
    row = {
        "mode": mode, "precision": precision.mode, "seed": seed, "config_sha": sha,
        "val_avg": round(result.best_metrics["val/avg_score"], 3),
        "train_img_per_s": round(sum(rates) / len(rates), 2),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(row, indent=2) + "\n")
    return row


def main(argv: list[str], train_fn=train) -> int:
    """`train_fn`: training.loop.train unless a test passes its own."""
    # no options, but --help must answer instead of starting four training runs
    prog, summary = "python -m benchmarks precision", __doc__.split("\n")[0]
    argparse.ArgumentParser(prog=prog, description=summary).parse_args(argv)
    base = best_config()
    runs = [_run(mode, seed, base, train_fn) for mode in MODES for seed in SEEDS]

    def mean(mode: str, key: str) -> float:
        values = [r[key] for r in runs if r["mode"] == mode]
        return sum(values) / len(values)

    figures = {
        "fast_vs_fp32_val_avg_delta": round(mean("fast", "val_avg") - mean("fp32", "val_avg"), 2),
        "fast_vs_fp32_train_speedup": round(
            mean("fast", "train_img_per_s") / mean("fp32", "train_img_per_s"), 2
        ),
        "fast_mode": next(r["precision"] for r in runs if r["mode"] == "fast") + "+channels_last",
        "precision_runs": runs,
        "precision_code_version": code_version(),
    }
    record(figures)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

