"""make gpu-check: what a GPU machine does with this project, in one run of at most ten minutes.

    python -m benchmarks.gpu_check             # on a GPU machine: writes benchmarks/gpu_check.json
    python -m benchmarks.gpu_check --dry-run   # the same steps on the CPU at toy sizes (make test runs it)

Steps (each records its figures or its error; one failing step does not hide the others):
1. environment: torch and CUDA versions, the GPU, its compute capability and the precision training picks;
2. models: `make bench`'s model figures (training step, KV-cache and full-recompute decoding) on CUDA;
3. train_resume: the transformer study's largest model (the top of every sampled range) trains 2 epochs
   of a rendered dataset, is cut, and resumes for a third: peak GPU memory, epoch-1 against epoch-2 img/s
   (epoch 1 pays cuDNN and allocator warm-up), whether the resume continued at epoch 3 with the same
   history, and best.pt's decoding speed;
4. packed_smoke: the smoke study with TRIALS_PER_GPU=2 (two workers sharing the GPU, each capped to half
   its memory) for 4 trials: their outcomes and that the decode speed was flagged as shared.
A dry run writes to a temp file unless --out says otherwise: its toy figures must never replace a GPU's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from core.paths import REPO_ROOT
from core.typed_config import merge
from data_prep.ensure import synth_dataset
from search.spec.parse import load_spec
from search.spec.space import build_config_dict
from search.study.studies import code_version
from training.callbacks import Callback
from training.config import load_train_config
from training.loop import train
from training.precision import choose_precision

RESULT_FILE = REPO_ROOT / "benchmarks" / "gpu_check.json"
FULL = {"images": 4000, "val_limit": 256, "smoke_trials": 4, "workers": 2, "train_limit": None, "decode": 32}
DRY = {"images": 120, "val_limit": 8, "smoke_trials": 2, "workers": 2, "train_limit": 32, "decode": 4}
TINY_MODEL = {"kind": "transformer", "d_model": 32, "nhead": 2, "num_layers": 1, "dim_feedforward": 64,
              "cut_after": 2, "stage1": "r18", "stage2": "r18", "max_output_len": 24}


class _CutAfter(Callback):
    """Ends the run like a Ctrl-C at the end of `epoch` (last.pt is already written by then)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def largest_params(spec_name: str = "transformer") -> dict[str, Any]:
    """The top of every range of the spec: its most memory-hungry trial (heads: the most that divide
    d_model)."""
    spec = load_spec(spec_name)
    params: dict[str, Any] = {}
    for p in spec.space:
        if p.choices is not None:
            params[p.path] = max(p.choices, key=lambda label, p=p: _size_rank(p.choices[label]))
        else:
            params[p.path] = int(p.high) if p.kind == "int" else p.high
    if "model.d_model" in params and "model.nhead" in params:
        d_model = spec.param("model.d_model").choices[params["model.d_model"]]
        heads = spec.param("model.nhead")
        params["model.nhead"] = max((label for label, h in heads.choices.items() if d_model % h == 0),
                                    key=lambda label: heads.choices[label])
    return build_config_dict(spec, params)


def _size_rank(choice: Any) -> Any:
    # r18 < r34 < r50; numbers by value; other labels (optimisers, schedules) are all the same size
    text = str(choice)
    if text.startswith("r") and text[1:].isdigit():
        return int(text[1:])
    return choice if isinstance(choice, (int, float)) else 0


def check_environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "cuda_build": torch.version.cuda,
                            "device": str(device), "cpu_cores": os.cpu_count()}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device),
                    capability=".".join(map(str, torch.cuda.get_device_capability(device))),
                    memory_gb=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1),
                    cudnn=torch.backends.cudnn.version())
    precision = choose_precision(device, "auto")
    info.update(precision=precision.mode, precision_reason=precision.reason)
    return info


def check_models(device: torch.device) -> dict[str, Any]:
    from benchmarks import bench_models

    if device.type != "cuda":
        return {"skipped": "the CPU figures are make bench's (bench_models)"}
    figures: dict[str, Any] = {}
    families = (("", bench_models.ResNetTransformerConfig()), ("rnn_", bench_models.CNNRNNConfig()))
    for family, config in families:
        torch.manual_seed(0)
        model = bench_models.build_model(config, bench_models.VOCAB).to(device)
        figures.update(bench_models._bench_family(model, device, "cuda_" + family))
        del model
        torch.cuda.empty_cache()
    return figures


def check_train_resume(root: Path, device: torch.device, sizes: dict, out: Path) -> dict[str, Any]:
    data = largest_params() if device.type == "cuda" else merge(largest_params(), {"model": TINY_MODEL})
    data = merge(data, {
        "data": {"dataset": str(root), "val_limit": sizes["val_limit"], "train_limit": sizes["train_limit"]},
        "trainer": {"epochs": 3, "progress": False, "device": str(device), "save_every_epoch": True,
                    "decode_speed_formulas": sizes["decode"],
                    "val_max_len": None if device.type == "cuda" else 12,
                    "batch_size": data["trainer"]["batch_size"] if device.type == "cuda" else 8},
    })
    config = load_train_config(data)
    start = time.perf_counter()
    try:
        train(config, out, callbacks=[_CutAfter(2)])
    except KeyboardInterrupt:
        pass
    cut_s = time.perf_counter() - start
    result = train(config, out, resume_from=out / "last.pt")
    history = result.history
    rate = {int(row["epoch"]): row["images_per_s"] for row in history}
    return {
        "model": dataclasses.asdict(config.model),
        "batch_size": config.trainer.batch_size,
        "train_images": _train_size(root, sizes["train_limit"]),
        "epochs_before_cut_s": round(cut_s, 1),
        "img_per_s_epoch1": round(rate.get(1, 0.0), 1),
        "img_per_s_epoch2": round(rate.get(2, 0.0), 1),
        "img_per_s_epoch3_resumed": round(rate.get(3, 0.0), 1),
        "peak_mem_mb": round(max(row["gpu_peak_mem_mb"] for row in history), 1),
        "resumed_epochs": [int(row["epoch"]) for row in history],
        "resume_ok": [int(row["epoch"]) for row in history] == [1, 2, 3],
        "val_avg_score": round(result.best_metrics.get("val/avg_score", float("nan")), 2),
        **{k.replace("/", "_"): round(v, 2) for k, v in result.decode_speed.items()},
    }


def check_packed_smoke(device: torch.device, sizes: dict, home: Path) -> dict[str, Any]:
    import gc

    import optuna

    gc.collect()  # the largest model's cached blocks must not sit beside the packed workers' shares
    if device.type == "cuda":
        torch.cuda.empty_cache()

    env = dict(os.environ, IM2LATEX_HOME=str(home), TRIALS_PER_GPU=str(sizes["workers"]))
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "search", "study", str(REPO_ROOT / "studies" / "smoke.yaml"),
           "--trials", str(sizes["smoke_trials"]), "--workers", str(sizes["workers"]),
           "--device", "cuda" if device.type == "cuda" else "cpu"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=420)
    wall = time.perf_counter() - start
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(home / "studies" / "smoke.journal"))
    )
    trials = optuna.load_study(study_name="smoke", storage=storage).get_trials(deepcopy=False)
    states = [t.state.name for t in trials]
    return {
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "trials": len(trials),
        "states": {s: states.count(s) for s in sorted(set(states))},
        "decode_speed_shared": sorted({t.user_attrs.get("decode_speed_shared", 1) for t in trials}),
        "stderr_tail": proc.stderr[-600:] if proc.returncode else "",
    }


def _train_size(root: Path, limit: int | None) -> int:
    n = sum(1 for line in open(root / "train.lst") if line.strip())
    return n if limit is None else min(n, limit)


def _render(root: Path, n: int) -> dict[str, Any]:
    synth_dataset(root, n=n, seed=0)
    return {"images": n, "train": sum(1 for _ in open(root / "train.lst"))}


def _step(results: dict, name: str, fn: Callable[[], dict]) -> None:
    print(f"== {name}", flush=True)
    start = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as exc:  # recorded: the next step still runs
        results[name] = {"error": repr(exc)[:500], "traceback": traceback.format_exc()[-2000:]}
    results[name]["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(results[name], indent=2, default=str), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes, a temp result file")
    parser.add_argument("--out", type=Path, default=None,
                        help="result file (default benchmarks/gpu_check.json)")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        from search.study.devices import gpu_problem

        print(f"error: no usable GPU ({gpu_problem()}); on the CPU run --dry-run", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    sizes = DRY if args.dry_run else FULL
    out = args.out or (Path(tempfile.gettempdir()) / "gpu_check.dry.json" if args.dry_run else RESULT_FILE)
    results: dict[str, Any] = {"code_version": code_version(), "dry_run": args.dry_run}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        root = Path(tmp) / "data"
        _step(results, "environment", lambda: check_environment(device))
        _step(results, "models", lambda: check_models(device))
        _step(results, "dataset", lambda: _render(root, sizes["images"]))
        _step(results, "train_resume", lambda: check_train_resume(root, device, sizes, Path(tmp) / "run"))
        _step(results, "packed_smoke", lambda: check_packed_smoke(device, sizes, Path(tmp) / "home"))
    results["total_s"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    failed = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    print(f"wrote {out} ({results['total_s']:.0f} s){'; failed: ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
