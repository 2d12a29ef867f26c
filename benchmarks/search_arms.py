"""python -m benchmarks search [--quick]: does the search pay off? (`make bench-search`)

Five strategies on the CPU profile (studies/transformer-cpu.yaml, dataset synth-cpu), each held to the
same hard budget of training epochs (`budget.total_epochs`: the trial that would cross it is cut at it):

- random: random search, no pruning;
- tpe: the spec's TPE sampler, no pruning;
- tpe_hyperband: the spec's sampler and pruner, as `make study` runs them (`default_arm`);
- hand_tuning: what a careful person does with the same epochs: the course's config placed in the
  profile by a written rule and a learning-rate sweep that spends the budget (benchmarks/hand_tuning.py);
- course_best: the course's config as the course ran it (its cut, batch and lr lie outside the profile):
  one run, a reference line, not an equal-budget arm.

Each search arm runs once per sampler seed in SEARCH_SEEDS, seeds no earlier run of the bench used (the
profile's space was shaped on sampler seed 0's runs), from a spec frozen before the run. For each seed,
random and TPE draw the same startup trials, so both TPE arms copy random's instead of training them
again (marked `copied_from`; their epochs count as the arm's own, and Hyperband gets the rung values it
would have recorded). Test scores come from retrains with training seeds no trial used (every trial
trains with seed 0): search seed i's chosen config is retrained with TEST_SEEDS[i]; the hand arms' chosen
configs with every test seed. The run that won a validation ranking is scored on test too
(`selected_run_test_avg`), shown apart and never averaged in. The test split never reaches selection.

Every study is a journal under runs/bench-search/ (copy benchmarks/search-journals/ there to continue a
run from another machine) and every retrain writes its result beside its run, so an interrupted
benchmark continues where it stopped, trial by trial; a stored run or test score is reused only under the
same config, seed, dataset content and source code (`run_key`). Results: benchmarks/search_results.json
and .html (benchmarks/search_results.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from benchmarks.hand_tuning import course_params, hand_tuning_trials
from core.paths import REPO_ROOT, runs_dir
from core.typed_config import set_path, to_dict
from search.run import runner
from search.spec.config_paths import base_config_dict
from search.spec.parse import StudySpec, load_spec, parse_spec
from search.study import studies
from search.study.pruners import create_pruner
from search.study.recovery import rerun_trials
from search.study.studies import dataset_hash
from search.tracking import PARENT_ATTR, StudyTracker

log = logging.getLogger(__name__)

SEARCH_ARMS = ("random", "tpe", "tpe_hyperband")
HAND_ARMS = ("hand_tuning", "course_best")
STRATEGIES = (*SEARCH_ARMS, *HAND_ARMS)
DEFAULT_ARM = "tpe_hyperband"  # what `make study NAME=transformer-cpu` runs: the spec's sampler and pruner
SOURCE_PACKAGES = ("core", "data_prep", "models", "training", "search", "benchmarks")  # source_hash reads
SPEC_NAME = "transformer-cpu"
BUDGET_EPOCHS = 32  # per strategy and search seed: 4 full-fidelity trials of 8 epochs (benchmarks/RESULTS.md)
JOURNALS = REPO_ROOT / "benchmarks" / "search-journals"  # the full run's journals, committed as it goes
SEARCH_SEEDS = (11, 12, 13)  # sampler seeds no earlier run used: the space was shaped on seed 0's runs
TEST_SEEDS = (1, 2, 3)  # training seeds no trial trains with (every trial trains with seed 0)


@dataclass(frozen=True)
class Plan:
    spec: StudySpec  # the profile's spec, possibly shrunk by --quick
    budget_epochs: int
    work: Path  # journals and retrain runs
    out: Path  # search_results.json / .html
    quick: bool
    test_limit: int | None = None
    search_seeds: tuple[int, ...] = SEARCH_SEEDS
    test_seeds: tuple[int, ...] = TEST_SEEDS
    train_fn: Any = None  # training.loop.train's signature; None: the real loop (tests pass their own)


def make_plan(args: argparse.Namespace) -> Plan:
    spec = load_spec(args.spec)
    if args.quick:
        data = json.loads(json.dumps(spec.data, default=str))
        data["dataset"] = "synth-small"
        # plumbing, not evidence: a slice of synth-small, short decoding, and no decode-speed timing (a
        # fifth of the run's time, and no arm reads it)
        quick_fixed = {"data.train_limit": 32, "data.val_limit": 8, "model.max_output_len": 24,
                       "trainer.decode_speed_formulas": 0}  # fmt: skip
        data["fixed"] = {**(data.get("fixed") or {}), **quick_fixed}
        # two epochs a trial and a rung after the first, so Hyperband can cut; room for TPE's own proposals
        # after the two copied startup trials; one search seed (the seed loop is the same for three) and two
        # test seeds, so the hand arms' means and spreads are taken
        data["budget"] = {**data["budget"], "max_epochs": 2}
        data["sampler"] = {**data["sampler"], "n_startup_trials": 2}
        data["pruner"] = {**data["pruner"], "min_resource": 1}
        spec = parse_spec(data, default_name=spec.name, source=spec.source)
        work = runs_dir() / "bench-search-quick"
        return Plan(spec, args.budget or 10, work, args.out or work, True, test_limit=8,
                    search_seeds=SEARCH_SEEDS[:1], test_seeds=TEST_SEEDS[:2])  # fmt: skip
    work = runs_dir() / "bench-search"
    return Plan(spec, args.budget or BUDGET_EPOCHS, work, args.out or REPO_ROOT / "benchmarks", False)


def arm_spec(plan: Plan, arm: str, seed: int | None = None) -> StudySpec:
    """The study one arm runs with one sampler seed: the profile's space, the arm's sampler and pruner;
    the hand-tuning arm's trials are its enqueued sweep (no seed: nothing in it is drawn)."""
    data = json.loads(json.dumps(plan.spec.data, default=str))
    data.pop("enqueue", None)  # an older spec's baselines: the hand arms measure them
    data["name"] = f"bench-{plan.spec.name}{'-quick' if plan.quick else ''}-{arm}{_seed_suffix(seed)}"
    # the epoch budget stops it, not a count; the trial crossing it is cut at it (search.study.epoch_budget)
    data["budget"] = {**data["budget"], "n_trials": 10_000, "total_epochs": plan.budget_epochs}
    data["sampler"] = {**data["sampler"], "seed": 0 if seed is None else seed}
    if arm in ("random", "hand_tuning"):
        data["sampler"] = {"name": "random", "seed": data["sampler"]["seed"]}
    if arm in ("random", "tpe", "hand_tuning"):
        data["pruner"] = {"name": "none"}
    if arm == "hand_tuning":
        data["enqueue"] = hand_tuning_trials(plan.spec, plan.budget_epochs)
        data["budget"]["n_trials"] = len(data["enqueue"])  # the sweep, nothing sampled after it
    return parse_spec(data, default_name=data["name"], source=plan.spec.source)


def journal(plan: Plan, arm: str, seed: int | None = None) -> Path:
    return plan.work / f"{arm}{_seed_suffix(seed)}.journal"


def _seed_suffix(seed: int | None) -> str:
    return "" if seed is None else f"-seed{seed}"


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
    plan: Plan, arm: str, seed: int, spec: StudySpec, study: optuna.Study, wait_s: float = 3 * 3600
) -> int:
    """Add the random arm's first `n_startup_trials` finished trials (same sampler seed) to an empty TPE or
    TPE + Hyperband study (the same draws its sampler's startup would make). Another process running the
    random arm is waited for; no random journal, or no trials within `wait_s`, means the arm trains its
    own. Returns the number copied."""
    n = spec.sampler.n_startup_trials
    source_path = journal(plan, "random", seed)
    _continue_committed(plan, source_path)  # random ran on another machine
    if study.trials or not source_path.exists():
        return 0
    deadline = time.monotonic() + wait_s
    while True:
        source = studies.load_existing(arm_spec(plan, "random", seed).name, str(source_path))
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


def run_study(plan: Plan, arm: str, seed: int | None) -> dict[str, Any]:
    """One arm's study with one sampler seed, run until its epoch budget is spent (resumes a journal)."""
    spec = arm_spec(plan, arm, seed)
    path = journal(plan, arm, seed)
    committed = None if plan.quick else JOURNALS / path.name
    _continue_committed(plan, path)
    storage = str(path)
    study = studies.prepare_study(spec, storage)
    if arm in ("tpe", "tpe_hyperband") and copy_random_startup(plan, arm, seed, spec, study):
        study = studies.load_existing(spec.name, storage)
    label = f"{arm}{_seed_suffix(seed)}"
    done = search_summary(study)["epochs_consumed"]
    if done < plan.budget_epochs and _unfinished(study, spec):
        print(f"[{label}] {done}/{plan.budget_epochs} epochs consumed; searching", flush=True)

        def say_progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if committed is not None:  # trial by trial, so a stop loses at most the trial in progress
                committed.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, committed)
            info = search_summary(study)
            print(
                f"[{label}] trial {trial.number} {trial.state.name} after {trial_epochs(trial)} epoch(s): "
                f"{info['epochs_consumed']}/{plan.budget_epochs} epochs, best {info['best_val_avg']}",
                flush=True,
            )

        tracker = StudyTracker(spec.name, study.user_attrs.get(PARENT_ATTR))
        status = "KILLED"
        try:
            runner.run_worker(spec, spec.budget.n_trials, storage, callbacks=[say_progress],
                              train_fn=plan.train_fn)
            status = "FINISHED"
        finally:
            tracker.finish_parent(status)
        study = studies.load_existing(spec.name, storage)
    return {"search_seed": seed, **search_summary(study)}


def _continue_committed(plan: Plan, path: Path) -> None:
    """A full run begun on another machine continues here: its committed journal seeds the work folder."""
    committed = JOURNALS / path.name
    if plan.quick or path.exists() or not committed.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(committed, path)
    print(f"continuing {path.stem} from {committed.relative_to(REPO_ROOT)}", flush=True)


def _unfinished(study: optuna.Study, spec: StudySpec) -> bool:
    """The hand-tuning sweep ends with its last enqueued trial even under budget."""
    return len(finished_trials(study)) < spec.budget.n_trials


def run_course_best(plan: Plan) -> dict[str, Any]:
    """The course's config as the course ran it, at full fidelity: one run with the searches' seed."""
    config = course_config(plan)
    result = train_once(plan, "course_best", "search", config, seed=0, test=False)
    return {
        "search_seed": None,
        "best_val_avg": result["best_val_avg"],
        "epochs_consumed": result["epochs"],
        "epochs_to_best": result["epochs"],
        "wall_s": result["wall_s"],
        "trials": 1,
        "pruned": 0,
        "failed": 0,
        "trials_per_hour": round(3600.0 / result["wall_s"], 2) if result["wall_s"] else None,
        "best_trial": None,
        "best_config": config,
        "best_checkpoint": result["best_checkpoint"],
        "curve": [[result["epochs"], result["best_val_avg"]]],
        "diverged_at_epoch": result.get("diverged_at_epoch"),  # the course's config can diverge in bf16
    }


def course_config(plan: Plan) -> dict[str, Any]:
    """The course's best (transformer.yaml) on the profile's base config, at the profile's epochs."""
    data = base_config_dict(plan.spec)
    for path, value in course_params().items():
        set_path(data, path, value)
    set_path(data, "trainer.epochs", plan.spec.budget.max_epochs)
    return to_dict(_load(data))


def _load(config: dict[str, Any]):
    from training.config import load_train_config

    return load_train_config(config)


def train_once(plan: Plan, arm: str, tag: str, config: dict[str, Any], *, seed: int, test: bool) -> dict:
    """Train `config` with `seed` into runs/bench-search/<arm>/<tag>-seed<seed>, scoring the best
    checkpoint on the test split when `test`. Reuses the stored result of an identical earlier run."""
    config = json.loads(json.dumps(config))
    config["trainer"]["seed"] = seed
    digest = run_key(plan, config)
    out = plan.work / arm / f"{tag}-seed{seed}"
    stored = out / "bench_result.json"
    if stored.exists():
        previous = json.loads(stored.read_text())
        # a run that diverged before its first validation has no checkpoint to score
        scored = previous.get("test_avg") is not None or previous.get("best_checkpoint") is None
        if previous.get("config_sha") == digest and (scored or not test):
            return previous
    print(f"[{arm}] training {tag} with seed {seed}", flush=True)
    start = time.perf_counter()
    best, best_val, epochs, diverged_at = _train_to_the_end_or_divergence(plan, config, out)
    record = {
        "config_sha": digest,
        "seed": seed,
        "best_val_avg": best_val,
        "epochs": epochs,
        "wall_s": round(time.perf_counter() - start, 1),
        "best_checkpoint": None if best is None else str(best),
        "test_avg": score_test(plan, best) if test and best is not None else None,
        "diverged_at_epoch": diverged_at,
    }
    out.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _train_to_the_end_or_divergence(plan: Plan, config: dict[str, Any], out: Path) -> tuple[Any, ...]:
    """(best.pt, its val avg, epochs consumed, the epoch the loss became NaN or None). A run that diverges
    counts as what it reached: the best.pt it wrote before, the epochs it spent (the diverging one too).
    The course's own config diverged at epoch 5 in bf16 on an AVX512-BF16 CPU: a reference line to draw,
    not a reason to stop the benchmark."""
    from training.errors import NonFiniteLossError
    from training.loop import train

    started = time.time()
    try:
        result = (plan.train_fn or train)(_load(config), out)
    except NonFiniteLossError as exc:
        print(f"{out.name} diverged: {exc}", flush=True)
        best = out / "best.pt"
        # an older best.pt is another run's (a second's slack: file times are coarser than time.time())
        if not best.is_file() or best.stat().st_mtime < started - 1.0:
            return None, None, exc.epoch, exc.epoch
        state = torch.load(best, map_location="cpu", weights_only=False)
        return best, state["metrics"].get("val/avg_score"), exc.epoch, exc.epoch
    return result.best_checkpoint, result.best_metrics.get("val/avg_score"), len(result.history), None


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


def test_runs(plan: Plan, arm: str, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Test scores from unselected training seeds: search seed i's chosen config retrained with test seed
    i; a hand arm's one chosen config with every test seed."""
    pairs = (
        list(zip(runs, plan.test_seeds, strict=False))
        if arm in SEARCH_ARMS
        else [(runs[0], seed) for seed in plan.test_seeds]
    )
    out = []
    for run, seed in pairs:
        if not run.get("best_config"):
            continue
        tag = f"retrain{_seed_suffix(run['search_seed'])}"
        result = train_once(plan, arm, tag, run["best_config"], seed=seed, test=True)
        out.append({"search_seed": run["search_seed"], "test_seed": seed, "test_avg": result["test_avg"],
                    "val_avg": result["best_val_avg"], "wall_s": result["wall_s"],
                    "diverged_at_epoch": result.get("diverged_at_epoch")})  # fmt: skip
    return out


def selected_test_avg(plan: Plan, arm: str, run: dict[str, Any]) -> float | None:
    """The test score of the very run that won the validation ranking: shown apart, never averaged in."""
    if not run.get("best_checkpoint") or not Path(run["best_checkpoint"]).is_file():
        return None
    return _cached_test_score(plan, f"{arm}{_seed_suffix(run['search_seed'])}", Path(run["best_checkpoint"]))


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


def run_arm(plan: Plan, arm: str) -> dict[str, Any]:
    """Every search seed of one arm (or its one run), then its test retrains: per-seed records."""
    if arm == "course_best":
        runs = [run_course_best(plan)]
    else:
        seeds = plan.search_seeds if arm in SEARCH_ARMS else (None,)
        runs = [run_study(plan, arm, seed) for seed in seeds]
    for run in runs:
        run["selected_run_test_avg"] = selected_test_avg(plan, arm, run)
    return {"runs": runs, "tests": test_runs(plan, arm, runs)}


def run(plan: Plan, arms: tuple[str, ...] = STRATEGIES) -> dict[str, dict[str, Any]]:
    """Arms in STRATEGIES order: random's journals exist before the TPE arms copy from them."""
    plan.work.mkdir(parents=True, exist_ok=True)
    return {arm: run_arm(plan, arm) for arm in STRATEGIES if arm in arms}


def main(argv: list[str], train_fn: Any = None) -> int:
    """`train_fn`: training.loop.train's stand-in for every trial and retrain (tests)."""
    from benchmarks.search_results import write_results

    parser = argparse.ArgumentParser(prog="python -m benchmarks search", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny budget on synth-small (the tests' run)")
    parser.add_argument("--spec", default=SPEC_NAME, help="the study spec whose space is searched")
    parser.add_argument("--budget", type=int, help=f"epochs per strategy (default {BUDGET_EPOCHS})")
    parser.add_argument("--out", type=Path, help="folder for search_results.json/.html")
    parser.add_argument(
        "--render",
        action="store_true",
        help="only write search_results.html and benchmarks/RESULTS.md's results block again from "
        "search_results.json",
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
    plan = dataclasses.replace(make_plan(args), train_fn=train_fn)
    if args.render:
        from benchmarks.search_results import RESULTS_DOC, render

        source = plan.out / "search_results.json"
        written = render(source, None if plan.quick else RESULTS_DOC)  # a quick run's figures stay out of it
        print(f"wrote {' and '.join(map(str, written))} from {source}")
        if not plan.quick and RESULTS_DOC not in written:
            print(f"left {RESULTS_DOC} as it is: no results markers, or a JSON older than this benchmark")
        return 0
    start = time.perf_counter()
    strategies = run(plan, args.arms)
    if set(strategies) != set(STRATEGIES):
        print(f"ran {', '.join(strategies)} ({time.perf_counter() - start:.0f} s); run without --arms to "
              "write the results (finished arms are not run again)")
        return 0
    path = write_results(plan, strategies, DEFAULT_ARM)
    print(f"wrote {path} and {path.with_suffix('.html')} ({time.perf_counter() - start:.0f} s this run)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
