"""python -m benchmarks search [--quick]: does the search pay off? (`make bench-search`)

Five strategies on the CPU profile (studies/transformer-cpu.yaml, dataset synth-cpu), each given the same
budget in training epochs:

- course_best, reference_default: the hand-tuned baselines enqueued by studies/transformer.yaml (the
  course's best and the reference default), applied to the profile's base config: one run each;
- random: random search, no pruning;
- tpe: the spec's TPE sampler, no pruning;
- tpe_hyperband: the spec's sampler and pruner, as `make study` runs them.

The search arms start from nothing (no enqueued baselines). random and TPE share the sampler seed, so
TPE's first random trials are random search's first trials (same params; on CPU the same scores to the
last bit): differences come from the strategy, not the draw. Both TPE arms therefore copy their
`n_startup_trials` random trials from the random arm instead of training them again (marked
`copied_from`; their epochs and wall seconds count as the arm's own, and Hyperband gets the rung values
it would have recorded). Every arm's best config is then scored on
the test split, which no search sees, with two seeds: its own full run (seed 0, as every trial trains)
and a retrain with seed 1. Each arm is its own study (a
journal under runs/bench-search/) and each retrain writes its result beside its run, so an interrupted
benchmark continues where it stopped; a stored run or score is reused only under the same config, seed,
dataset content and source code (`run_key`). Results: benchmarks/search_results.json and .html
(benchmarks/search_results.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from core.paths import REPO_ROOT, runs_dir
from core.typed_config import set_path, to_dict
from search import runner, studies
from search.config_paths import base_config_dict
from search.pruners import create_pruner
from search.recovery import rerun_trials
from search.spec import StudySpec, load_spec, parse_spec
from search.studies import dataset_hash
from search.tracking import PARENT_ATTR, StudyTracker

log = logging.getLogger(__name__)

HAND_ARMS = {"course_best": "course-best", "reference_default": "reference-default"}  # -> enqueue label
HAND_SPEC = "transformer"  # whose enqueued baselines are the hand-tuned configs
SEARCH_ARMS = ("random", "tpe", "tpe_hyperband")
SOURCE_PACKAGES = ("core", "data_prep", "models", "training", "search", "benchmarks")  # source_hash reads
STRATEGIES = (*HAND_ARMS, *SEARCH_ARMS)
SPEC_NAME = "transformer-cpu"
BUDGET_EPOCHS = 64  # per strategy: 8 full-fidelity trials of 8 epochs (about 3 h for the whole run)
# Seed 0 is the one every search trial and hand-tuned run trains with: the best config's own full run is
# its seed-0 training (on CPU a retrain with seed 0 repeats it), so only seed 1 is trained again.
SEEDS = (0, 1)


@dataclass(frozen=True)
class Plan:
    spec: StudySpec  # the profile's spec, possibly shrunk by --quick
    budget_epochs: int
    work: Path  # journals and retrain runs
    out: Path  # search_results.json / .html
    quick: bool
    test_limit: int | None = None


def make_plan(args: argparse.Namespace) -> Plan:
    spec = load_spec(args.spec)
    if args.quick:
        data = json.loads(json.dumps(spec.data, default=str))
        data["dataset"] = "synth-small"
        # plumbing, not evidence: a slice of synth-small, one epoch a trial, short decoding
        quick_fixed = {"data.train_limit": 32, "data.val_limit": 8, "model.max_output_len": 24}
        data["fixed"] = {**(data.get("fixed") or {}), **quick_fixed}
        data["budget"] = {**data["budget"], "max_epochs": 1}
        data["sampler"] = {**data["sampler"], "n_startup_trials": 2}
        data["pruner"] = {**data["pruner"], "min_resource": 1}
        spec = parse_spec(data, default_name=spec.name, source=spec.source)
        work = runs_dir() / "bench-search-quick"
        return Plan(spec, args.budget or 2, work, args.out or work, True, test_limit=8)
    work = runs_dir() / "bench-search"
    return Plan(spec, args.budget or BUDGET_EPOCHS, work, args.out or REPO_ROOT / "benchmarks", False)


def arm_spec(plan: Plan, arm: str) -> StudySpec:
    """The study one search arm runs: the profile's space, its own sampler and pruner, no baselines."""
    data = json.loads(json.dumps(plan.spec.data, default=str))
    data.pop("enqueue", None)  # an older spec's baselines: the hand arms measure them
    data["name"] = f"bench-{plan.spec.name}{'-quick' if plan.quick else ''}-{arm}"
    # the epoch budget stops it, not a count; the trial that would cross it is cut at it (search.epoch_budget)
    data["budget"] = {**data["budget"], "n_trials": 10_000, "total_epochs": plan.budget_epochs}
    if arm == "random":
        data["sampler"] = {"name": "random", "seed": data["sampler"].get("seed", 0)}
    if arm in ("random", "tpe"):
        data["pruner"] = {"name": "none"}
    return parse_spec(data, default_name=data["name"], source=plan.spec.source)


# -- epochs: the common currency -------------------------------------------------------------------------
def trial_epochs(trial: optuna.trial.FrozenTrial) -> int:
    """Epochs a trial trained: one report per validated epoch (the profile validates every epoch)."""
    return len(trial.intermediate_values)


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that count, in the order they ended; a trial cut short (Ctrl-C, a dead worker) is run again
    and counted then."""
    every = study.get_trials(deepcopy=False)
    rerun = rerun_trials(every)
    trials = [t for t in every if t.state in studies.FINISHED and t.number not in rerun]
    return sorted(trials, key=lambda t: (t.datetime_complete, t.number))


def search_summary(study: optuna.Study) -> dict[str, Any]:
    """Best-so-far curve over consumed epochs (full-fidelity, i.e. COMPLETE, trials only), counts, cost."""
    consumed, best, best_trial, epochs_to_best, curve, wall = 0, None, None, 0, [], 0.0
    states = {"PRUNED": 0, "FAIL": 0}
    sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
    for trial in finished_trials(study):
        consumed += trial_epochs(trial)
        wall += (trial.datetime_complete - trial.datetime_start).total_seconds()
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
        if trial.state.name == "COMPLETE" and (best is None or sign * trial.value > sign * best):
            best, best_trial, epochs_to_best = trial.value, trial, consumed
        curve.append([consumed, best])
    n = len(curve)
    return {
        "best_val_avg": best,
        "epochs_consumed": consumed,
        "epochs_to_best": epochs_to_best,
        "wall_s": round(wall, 1),
        "trials": n,
        "pruned": states["PRUNED"],
        "failed": states["FAIL"],
        "trials_per_hour": round(3600.0 * n / wall, 2) if wall else None,
        "best_trial": None if best_trial is None else best_trial.number,
        "best_config": None if best_trial is None else best_trial.user_attrs.get("config"),
        "best_checkpoint": None if best_trial is None else str(_trial_dir(study, best_trial) / "best.pt"),
        "curve": curve,
    }


def _trial_dir(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> Path:
    copied = trial.user_attrs.get("trial_dir")  # a trial copied from another arm keeps its run folder
    return Path(copied) if copied else runs_dir() / "studies" / study.study_name / f"trial-{trial.number:04d}"


def copy_random_startup(
    plan: Plan, arm: str, spec: StudySpec, study: optuna.Study, wait_s: float = 3 * 3600
) -> int:
    """Add the random arm's first `n_startup_trials` finished trials to an empty TPE or TPE + Hyperband
    study (the same draws its sampler's startup would make). Another process running the random arm is
    waited for; no random journal, or no trials within `wait_s`, means the arm trains its own. Returns the
    number copied."""
    n = spec.sampler.n_startup_trials
    source_path = plan.work / "random.journal"
    if study.trials or not source_path.exists():
        return 0
    deadline = time.monotonic() + wait_s
    while True:
        source = studies.load_existing(arm_spec(plan, "random").name, str(source_path))
        firsts = sorted(source.get_trials(deepcopy=True), key=lambda t: t.number)[:n]
        if len(firsts) == n and all(t.state in studies.FINISHED for t in firsts):
            break
        if time.monotonic() > deadline:
            return 0
        print(f"[{arm}] waiting for the random arm's first {n} trials to copy", flush=True)
        time.sleep(30)
    rungs = replayed_rungs(spec, study, firsts)
    for trial, rung_values in zip(firsts, rungs, strict=True):
        trial.set_user_attr("copied_from", f"{source.study_name}#{trial.number}")
        trial.set_user_attr("trial_dir", str(_trial_dir(source, trial)))
        trial.system_attrs = {**trial.system_attrs, **rung_values}
    study.add_trials(firsts)
    print(f"[{arm}] copied random's trials {[t.number for t in firsts]}", flush=True)
    return n


def replayed_rungs(
    spec: StudySpec, study: optuna.Study, trials: list[optuna.trial.FrozenTrial]
) -> list[dict[str, Any]]:
    """The rung values the arm's own pruner would have recorded had it run `trials` itself, as the first
    trials of `study`: a halving pruner ranks later trials against the values it stored on earlier ones
    (system attrs), which a trial copied from an unpruned arm lacks. Replayed in a scratch study of the
    same name, so Hyperband puts each trial in the bracket it would have had; the verdicts are ignored,
    because a copied trial stands for a startup trial, which the guard lets complete."""
    scratch = optuna.create_study(
        study_name=study.study_name, direction=study.direction, pruner=create_pruner(spec)
    )
    rungs = []
    for trial in trials:
        live = scratch.ask()
        for step, value in sorted(trial.intermediate_values.items()):
            live.report(value, step)
            live.should_prune()
        scratch.tell(live, trial.value if trial.state == TrialState.COMPLETE else None, state=trial.state)
        recorded = scratch.trials[-1].system_attrs
        rungs.append({key: value for key, value in recorded.items() if key.startswith("completed_rung_")})
    return rungs


def run_search_arm(plan: Plan, arm: str) -> dict[str, Any]:
    spec = arm_spec(plan, arm)
    storage = str(plan.work / f"{arm}.journal")
    study = studies.prepare_study(spec, storage)
    if arm in ("tpe", "tpe_hyperband") and copy_random_startup(plan, arm, spec, study):
        study = studies.load_existing(spec.name, storage)
    done = search_summary(study)["epochs_consumed"]
    if done < plan.budget_epochs:
        print(f"[{arm}] {done}/{plan.budget_epochs} epochs consumed; searching", flush=True)

        def say_progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            info = search_summary(study)
            print(
                f"[{arm}] trial {trial.number} {trial.state.name} after {trial_epochs(trial)} epoch(s): "
                f"{info['epochs_consumed']}/{plan.budget_epochs} epochs, best {info['best_val_avg']}",
                flush=True,
            )

        tracker = StudyTracker(spec.name, study.user_attrs.get(PARENT_ATTR))
        status = "KILLED"
        try:
            runner.run_worker(spec, spec.budget.n_trials, storage, callbacks=[say_progress])
            status = "FINISHED"
        finally:
            tracker.finish_parent(status)
        study = studies.load_existing(spec.name, storage)
    return search_summary(study)


def run_hand_arm(plan: Plan, arm: str) -> dict[str, Any]:
    """A hand-tuned config at full fidelity: one run with the searches' seed; its best val epoch."""
    config = hand_config(plan, HAND_ARMS[arm])
    result = train_once(plan, arm, "search", config, seed=0, test=False)
    return {
        "best_val_avg": result["best_val_avg"],
        "epochs_consumed": result["epochs"],
        "epochs_to_best": result["epochs"],
        "wall_s": result["wall_s"],
        "trials": 1,
        "pruned": 0,
        "failed": 0,
        "trials_per_hour": round(3600.0 / result["wall_s"], 2) if result["wall_s"] else None,
        "best_config": config,
        "best_checkpoint": result["best_checkpoint"],
        "curve": [[result["epochs"], result["best_val_avg"]]],
    }


def hand_config(plan: Plan, label: str) -> dict[str, Any]:
    """A baseline of transformer.yaml on the profile's base config, capped at the profile's epochs."""
    item = next(e for e in load_spec(HAND_SPEC).enqueue if e.label == label)
    data = base_config_dict(plan.spec)
    for path, value in item.params.items():
        set_path(data, path, value)
    set_path(data, "trainer.epochs", plan.spec.budget.max_epochs)
    return to_dict(_load(data))


def _load(config: dict[str, Any]):
    from training.config import load_train_config

    return load_train_config(config)


def train_once(plan: Plan, arm: str, tag: str, config: dict[str, Any], *, seed: int, test: bool) -> dict:
    """Train `config` with `seed` into runs/bench-search/<arm>/<tag>-seed<seed>, scoring the best
    checkpoint on the test split when `test`. Reuses the stored result of an identical earlier run."""
    from training.loop import train

    config = json.loads(json.dumps(config))
    config["trainer"]["seed"] = seed
    digest = run_key(plan, config)
    out = plan.work / arm / f"{tag}-seed{seed}"
    stored = out / "bench_result.json"
    if stored.exists():
        previous = json.loads(stored.read_text())
        if previous.get("config_sha") == digest and (previous.get("test_avg") is not None or not test):
            return previous
    print(f"[{arm}] training {tag} with seed {seed}", flush=True)
    start = time.perf_counter()
    result = train(_load(config), out)
    wall = time.perf_counter() - start
    record = {
        "config_sha": digest,
        "seed": seed,
        "best_val_avg": result.best_metrics.get("val/avg_score"),
        "epochs": len(result.history),
        "wall_s": round(wall, 1),
        "best_checkpoint": str(result.best_checkpoint),
        "test_avg": score_test(plan, result.best_checkpoint) if test else None,
    }
    stored.write_text(json.dumps(record, indent=2) + "\n")
    return record


def score_test(plan: Plan, checkpoint: Path) -> float:
    """val/avg_score's definition on the held-out test split, greedy decoding as in validation."""
    return split_metrics(checkpoint, "test", plan.test_limit)["avg_score"]


def split_metrics(checkpoint: Path, split: str, limit: int | None = None) -> dict[str, float]:
    """Every score of `checkpoint` on a split of its own dataset, greedy decoding as in validation."""
    from data_prep.dataset import build_loader
    from training.checkpoint import load_model
    from training.evaluate import evaluate
    from training.loop import resolve_dataset
    from training.runtime import resolve_device

    device = resolve_device("auto")
    model, vocab, config = load_model(checkpoint, device)
    root = resolve_dataset(config.data.dataset)
    loader = build_loader(root, split, vocab, 64, shuffle=False, limit=limit)
    result = evaluate(
        model, loader, vocab, device=device, amp=config.trainer.amp, max_len=config.trainer.val_max_len
    )
    return {key: float(value) for key, value in result.metrics.items()}


def retrain_and_test(plan: Plan, arm: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Test avg of the best config with each of SEEDS: seed 0 from the search's own run of it."""
    config = summary.get("best_config")
    if not config:
        return {"test_avg_seeds": [], "test_avg_mean": None}
    own = {"best_val_avg": summary["best_val_avg"], "wall_s": 0.0,
           "test_avg": _cached_test_score(plan, arm, Path(summary["best_checkpoint"]))}  # fmt: skip
    runs = [own if s == 0 else train_once(plan, arm, "retrain", config, seed=s, test=True) for s in SEEDS]
    scores = [r["test_avg"] for r in runs]
    return {
        "seeds": list(SEEDS),
        "test_avg_seeds": scores,
        "test_avg_mean": sum(scores) / len(scores),
        "val_avg_seeds": [r["best_val_avg"] for r in runs],
        "retrain_wall_s": round(sum(r["wall_s"] for r in runs), 1),
    }


def run_key(plan: Plan, what: Any) -> str:
    """The key a stored run or score is reused under: `what` (a config, its seed included, or a
    checkpoint's bytes), the dataset's content, the code and the test slice. A key of the config alone
    served numbers from older code or another dataset as if they were fresh."""
    if isinstance(what, Path):
        what = hashlib.sha256(what.read_bytes()).hexdigest()
    parts = [what, dataset_hash(plan.spec.dataset), source_hash(), plan.test_limit]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def source_hash() -> str:
    """The code a result came from, by content: the Python sources of the packages and benchmarks. Not
    `git describe --dirty`, which any edit of a tracked results file flips (and which names every
    uncommitted change alike)."""
    digest = hashlib.sha256()
    for path in sorted(p for pkg in SOURCE_PACKAGES for p in (REPO_ROOT / pkg).rglob("*.py")):
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _cached_test_score(plan: Plan, arm: str, checkpoint: Path) -> float:
    stored = plan.work / arm / "seed0-test.json"
    key = run_key(plan, checkpoint)
    if stored.exists():
        previous = json.loads(stored.read_text())
        if previous.get("key") == key:
            return previous["test_avg"]
    score = score_test(plan, checkpoint)
    stored.parent.mkdir(parents=True, exist_ok=True)
    record = {"checkpoint": str(checkpoint), "key": key, "test_avg": score}
    stored.write_text(json.dumps(record, indent=2) + "\n")
    return score


def run(plan: Plan, arms: tuple[str, ...] = STRATEGIES) -> dict[str, dict[str, Any]]:
    plan.work.mkdir(parents=True, exist_ok=True)
    strategies: dict[str, dict[str, Any]] = {}
    for arm in arms:
        strategies[arm] = run_hand_arm(plan, arm) if arm in HAND_ARMS else run_search_arm(plan, arm)
        strategies[arm].update(retrain_and_test(plan, arm, strategies[arm]))
    return strategies


def main(argv: list[str]) -> int:
    from benchmarks.search_results import write_results

    parser = argparse.ArgumentParser(prog="python -m benchmarks search", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny budget on synth-small (the tests' run)")
    parser.add_argument("--spec", default=SPEC_NAME, help="the study spec whose space is searched")
    parser.add_argument("--budget", type=int, help=f"epochs per strategy (default {BUDGET_EPOCHS})")
    parser.add_argument("--out", type=Path, help="folder for search_results.json/.html")
    parser.add_argument(
        "--render", action="store_true", help="only write search_results.html again from search_results.json"
    )
    parser.add_argument(
        "--arms",
        type=lambda text: tuple(text.split(",")),
        default=STRATEGIES,
        help="comma-separated subset to run now, e.g. one per process on a bigger machine; the results "
        f"files are written only when all of {','.join(STRATEGIES)} have run",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.arms) - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(STRATEGIES)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    plan = make_plan(args)
    if args.render:
        from benchmarks.search_results import results_html

        path = plan.out / "search_results.html"
        path.write_text(results_html(json.loads(path.with_suffix(".json").read_text())), encoding="utf-8")
        print(f"wrote {path} from {path.with_suffix('.json')}")
        return 0
    start = time.perf_counter()
    strategies = run(plan, args.arms)
    if set(strategies) != set(STRATEGIES):
        print(f"ran {', '.join(strategies)} ({time.perf_counter() - start:.0f} s); run without --arms to "
              "write the results (finished arms are not run again)")
        return 0
    strategies = {arm: strategies[arm] for arm in STRATEGIES}
    path = write_results(plan, strategies)
    print(f"wrote {path} and {path.with_suffix('.html')} ({time.perf_counter() - start:.0f} s this run)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
