"""python -m benchmarks crohme: the crohme-cpu study's best config against the two hand-tuned ones, on
CROHME 2013 (the test year no trial saw), each trained the same way with two seeds.

    make study NAME=crohme-cpu            # first: the study (resumable; its journal is committed)
    python -m benchmarks crohme [--seeds 1 2] [--study crohme-cpu]

Three configs: `harness_best` (the study's best complete, feasible trial), `course_best` and
`reference_default` (the study's enqueued baselines, labelled so in the journal). Each is trained again
with seeds 1 and 2, which no trial used: the best trial's own run won a validation ranking, a baseline's
did not, so reusing seed 0 would favour the harness. The study's own runs are scored on test too and
reported beside the means (`study_run`), not in them. A finished run (in runs/crohme-results/, or in the
committed JSON from another machine) is reused when its config and dataset hash are unchanged, so the
benchmark resumes per run; the JSON is rewritten after every run (`complete: false` until every seed of
every config is in).

benchmarks/crohme_results.json (a contract other tools read): code_version, dataset_hash, study, trials,
and `configs` with the keys harness_best, course_best, reference_default, each holding test_exprate,
test_exprate_le1, test_exprate_le2, test_avg, val_avg, epochs, wall_s (means over the seeds) and `seeds`
(the per-seed figures). Scores are 0-100 on the canonical token sequences.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import optuna

from benchmarks.search_arms import split_metrics
from core.bench import describe_device
from core.paths import runs_dir
from search.results.export import top_trials
from search.spec.parse import load_spec
from search.study.studies import code_version, dataset_hash, load_existing

RESULTS = Path(__file__).with_name("crohme_results.json")
BASELINES = {"course_best": "course-best", "reference_default": "reference-default"}
TEST_FIGURES = {"test_exprate": "exact_match", "test_exprate_le1": "exprate_le1",
                "test_exprate_le2": "exprate_le2", "test_avg": "avg_score", "test_bleu4": "bleu4",
                "test_edit_score": "edit_score"}  # fmt: skip
MEANS = ("test_exprate", "test_exprate_le1", "test_exprate_le2", "test_avg", "val_avg", "epochs", "wall_s")
MARGIN = 10.0  # test avg points the harness best must gain over both hand-tuned configs
# Seeds no trial trained with (every trial trains with seed 0): the best trial's own run won a
# validation ranking among many, a baseline's did not, so reusing it would favour the harness.
SEEDS = (1, 2)


def chosen_trials(study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    """The three configs' trials; a baseline that has not completed yet is missing."""
    ranked = top_trials(study, k=len(study.trials))  # complete, feasible, best first
    chosen = {"harness_best": ranked[0]} if ranked else {}  # first: a cut-short run still says most
    for key, label in BASELINES.items():
        match = [t for t in ranked if t.user_attrs.get("baseline") == label]
        if match:
            chosen[key] = match[0]
    return chosen


def trial_dir(study_name: str, trial: optuna.trial.FrozenTrial) -> Path:
    # a trial that resumed a cut-short one trained in that trial's folder and says so
    own = runs_dir() / "studies" / study_name / f"trial-{trial.number:04d}"
    return Path(trial.user_attrs.get("trial_dir", own))


def seeded_config(trial: optuna.trial.FrozenTrial, seed: int, data_hash: str) -> tuple[dict, str]:
    """The trial's config with `seed`, and the key a run of it on this dataset is stored under."""
    config = json.loads(json.dumps(trial.user_attrs["config"]))
    config["trainer"]["seed"] = seed
    return config, hashlib.sha256(json.dumps([config, data_hash], sort_keys=True).encode()).hexdigest()[:16]


def run_seed(
    key: str, trial: optuna.trial.FrozenTrial, seed: int, data_hash: str, known: list[dict], train_fn=None
) -> dict:
    """One seed of one config, trained (by `train_fn`, training.loop.train unless a test passes its own)
    and scored on test; a finished run (here, or recorded in the committed results on another machine)
    with the same config and data is reused."""
    from training.config import load_train_config
    from training.loop import train

    config, sha = seeded_config(trial, seed, data_hash)
    out = runs_dir() / "crohme-results" / f"{sha}-seed{seed}"  # by config: one run serves two keys
    stored = out / "crohme_result.json"
    for previous in [*known, *([json.loads(stored.read_text())] if stored.is_file() else [])]:
        if previous.get("config_sha") == sha and previous.get("test_avg") is not None:
            return {**previous, "trial": trial.number}
    print(f"[crohme] training {key} (trial {trial.number}) with seed {seed} into {out}", flush=True)
    start = time.perf_counter()
    result = (train_fn or train)(load_train_config(config), out)
    wall = round(time.perf_counter() - start, 1)
    # the code and CPU ride with each run: a results file mixes runs reused from other sessions
    record = {"config_sha": sha, "seed": seed, "trial": trial.number, "run": str(out),
              "val_avg": result.best_metrics.get("val/avg_score"), "epochs": len(result.history),
              "wall_s": wall, "code_version": code_version(), "device": describe_device(),
              **score_test(result.best_checkpoint)}  # fmt: skip
    stored.write_text(json.dumps(record, indent=2) + "\n")
    return record


def study_run(study_name: str, trial: optuna.trial.FrozenTrial, recorded: dict | None) -> dict | None:
    """The study's own seed-0 run of a config, scored on test: context, not part of the means. Trial
    folders stay on the machine that ran them, so the committed figures stand in where it is gone."""
    checkpoint = trial_dir(study_name, trial) / "best.pt"
    if not checkpoint.is_file():
        return recorded if recorded and recorded.get("trial") == trial.number else None
    return {"trial": trial.number, "val_avg": trial.value, "epochs": len(trial.intermediate_values),
            **score_test(checkpoint)}  # fmt: skip


def score_test(checkpoint: Path) -> dict[str, float]:
    metrics = split_metrics(checkpoint, "test")
    return {name: metrics[key] for name, key in TEST_FIGURES.items()}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in (*MEANS, "test_bleu4", "test_edit_score"):
        values = [r.get(name) for r in runs if r.get(name) is not None]
        out[name] = sum(values) / len(values) if values else None
    out["seeds"] = runs
    return out


def targets(configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    best, hands = configs.get("harness_best"), [configs.get(k) for k in BASELINES]
    if best is None or any(h is None for h in hands) or best["test_avg"] is None:
        return {"met": None, "why": "not every config has test figures yet"}
    margin = best["test_avg"] - max(h["test_avg"] for h in hands)
    higher_exprate = all(best["test_exprate"] > h["test_exprate"] for h in hands)
    return {"avg_margin": margin, "avg_margin_needed": MARGIN, "higher_exprate": higher_exprate,
            "met": margin >= MARGIN and higher_exprate}  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks crohme", description=__doc__.split("\n")[0])
    parser.add_argument("--study", default="crohme-cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--storage", help="the study's storage URL (default: its journal under studies/)")
    args = parser.parse_args(argv)
    study = load_existing(args.study, args.storage)
    data_hash = dataset_hash(load_spec(args.study).dataset)
    known = _recorded_runs()
    committed = _recorded_configs()
    chosen = chosen_trials(study)
    missing = [k for k in ("harness_best", *BASELINES) if k not in chosen]
    configs: dict[str, dict[str, Any]] = {}
    for key, trial in chosen.items():
        runs = []
        for seed in args.seeds:
            runs.append(run_seed(key, trial, seed, data_hash, known))
            configs[key] = summarise(runs)
            write(args, study, chosen, configs, data_hash, complete=False)
        configs[key]["study_run"] = study_run(args.study, trial, committed.get(key, {}).get("study_run"))
    write(args, study, chosen, configs, data_hash, complete=not missing)
    print(json.dumps({k: {m: v[m] for m in MEANS} for k, v in configs.items()}, indent=2))
    if missing:
        print(f"[crohme] not yet in the study: {', '.join(missing)} (run make study NAME={args.study})")
    return 0


def _recorded_configs() -> dict[str, dict]:
    try:
        return json.loads(RESULTS.read_text()).get("configs", {})
    except (OSError, ValueError):
        return {}


def _recorded_runs() -> list[dict]:
    """Per-seed records of the committed results: a run finished on another machine is not redone."""
    return [run for c in _recorded_configs().values() for run in c.get("seeds", [])]


def write(args, study, chosen, configs, data_hash: str, *, complete: bool) -> None:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    data = {
        "code_version": code_version(),
        "study_code_version": study.user_attrs.get("code_version"),
        "dataset_hash": data_hash,
        "study": args.study,
        "trials": counts,
        "chosen_trials": {k: t.number for k, t in chosen.items()},
        "seeds": args.seeds,
        "complete": complete,
        "configs": configs,
        "targets": targets(configs),
    }
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
