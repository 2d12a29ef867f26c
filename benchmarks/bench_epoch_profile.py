"""python -m benchmarks bench_epoch_profile: where one epoch of a CPU-profile trial spends its time.

A study's cost is trials per hour, so this splits one full epoch of a `transformer-cpu` trial into what
the real loop (`training.loop.train`) does, on `synth-cpu` (rendered on first use): the training steps
(forward, backward, optimizer), the rest of the training pass (waiting for the loader: cached images,
augmentation, collation), and validation (teacher-forced loss and greedy decoding of the 750 validation
images). The config is the best of the committed `make bench-search` run's harness-default arm
(`benchmarks/search_results.json`), trained for 2 epochs; the figures are those of the second, as a
trial's first epoch also pays for warm-up. The study's own bookkeeping (Optuna and MLflow) per trial is
bench_harness's `harness_overhead_s_per_trial`.

The run is on the CPU whatever the machine has, with one intra-op thread (`BENCH_CPU_THREADS` changes it,
as in bench_models; `cpu_epoch_threads` records it). The loader share is the training pass less its
steps: waiting for the next batch, plus the loop's own work between steps.

Figures: `cpu_epoch_s`, `cpu_epoch_step_share`, `cpu_epoch_loader_share`, `cpu_epoch_validation_share`,
`cpu_epoch_train_img_per_s`, `cpu_epoch_val_img_per_s`, `cpu_epoch_threads`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

from core.paths import REPO_ROOT
from training import loop
from training.callbacks import Callback
from training.config import load_train_config

log = logging.getLogger(__name__)

RESULTS = REPO_ROOT / "benchmarks" / "search_results.json"
ARM = "tpe_hyperband"


@contextmanager
def _timed(owner: object, names: tuple[str, ...], totals: dict[str, list[float]]):
    """Each call of the named functions or methods of `owner` (a class, or a module whose globals the loop
    calls them through) appends its wall seconds to totals[name]; restored after. (The loop has no phase
    timer of its own: a per-step clock in it would be noise for every trial.)"""
    originals = {name: getattr(owner, name) for name in names}

    def wrap(name: str):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return originals[name](*args, **kwargs)
            finally:
                totals[name].append(time.perf_counter() - start)

        return timed

    for name in names:
        setattr(owner, name, wrap(name))
    try:
        yield
    finally:
        for name, method in originals.items():
            setattr(owner, name, method)


class _PerEpochSteps(Callback):
    """Keeps the step times of the epoch that just ended (the last one's are summed); and the split sizes."""

    def __init__(self, totals: dict[str, list[float]]):
        self.totals, self.info, self.last_epoch_steps = totals, {}, []

    def on_train_start(self, config, info: dict) -> None:
        self.info = info

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        self.last_epoch_steps = list(self.totals["train_step"])
        self.totals["train_step"].clear()


def profile_config() -> dict:
    config = json.loads(Path(RESULTS).read_text())["strategies"][ARM]["best_config"]
    config["trainer"].update(
        {"epochs": 2, "progress": False, "decode_speed_formulas": 0, "device": "cpu", "amp": False}
    )
    return config


def run() -> dict[str, float]:
    return profile_epoch(profile_config())


def profile_epoch(config_dict: dict) -> dict[str, float]:
    """Trains `config_dict` and splits its last epoch into steps, the rest of the training pass and
    validation (shares of the epoch's wall time)."""
    config = load_train_config(config_dict)
    totals: dict[str, list[float]] = defaultdict(list)
    threads_before = torch.get_num_threads()
    threads = int(os.environ.get("BENCH_CPU_THREADS", "1"))
    torch.set_num_threads(threads)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-epoch-") as out,
            _timed(loop._Run, ("_train_epoch", "_validate"), totals),
            _timed(loop, ("train_step",), totals),  # training.step's, called through loop's globals
        ):
            watch = _PerEpochSteps(totals)
            result = loop.train(config, out, callbacks=[watch])
    finally:
        torch.set_num_threads(threads_before)
    train_s = totals["_train_epoch"][-1]
    step_s = sum(watch.last_epoch_steps)
    val_s = totals["_validate"][-1]
    epoch_s = result.history[-1]["epoch_time_s"]
    log.info("epoch %.1f s: steps %.1f, rest of the training pass %.1f, validation %.1f", epoch_s, step_s,
             train_s - step_s, val_s)
    return {
        "cpu_epoch_s": round(epoch_s, 1),
        "cpu_epoch_step_share": round(step_s / epoch_s, 3),
        "cpu_epoch_loader_share": round((train_s - step_s) / epoch_s, 3),
        "cpu_epoch_validation_share": round(val_s / epoch_s, 3),
        "cpu_epoch_train_img_per_s": round(result.history[-1]["images_per_s"], 1),
        "cpu_epoch_val_img_per_s": round(watch.info["val_size"] / val_s, 1),
        "cpu_epoch_threads": threads,
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(run())
