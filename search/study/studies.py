"""A study in its storage: creating or loading it with its sampler and pruner, its provenance (code version,
dataset hash, spec), and what it has done so far.

    python -m search study smoke --trials 4      # prepare_study, then search.run.runner.run_worker
    python -m search report smoke                # load_existing + summary, in search.results.report

The `study` command prepares the study once (records dataset hash, code version and spec, enqueues the
baselines, opens the MLflow parent run) before any worker starts, so workers only load and optimise.
"""

from __future__ import annotations

import json
import logging
import subprocess
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from core.paths import REPO_ROOT
from search.spec import pareto
from search.spec.config_paths import base_config_dict
from search.spec.objectives import feasible
from search.spec.parse import SpecError, StudySpec, parse_spec
from search.study.pruners import create_pruner
from search.study.recovery import recover_stale_trials
from search.study.storage import create_storage, describe_storage, study_exists
from search.study.trial_budget import counted
from search.study.warm_start import STUDY_ATTR as WARM_ATTR
from search.study.warm_start import is_foreign, resolve_sources, warm_start
from search.tracking import PARENT_ATTR, StudyTracker

log = logging.getLogger(__name__)


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


WORKER_INDEX_ENV = "SEARCH_WORKER_INDEX"  # set by workers.launch; a remote `worker` uses its pid


def create_sampler(spec: StudySpec, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    seed = None if spec.sampler.seed is None else (spec.sampler.seed + seed_offset) % 2**32
    if spec.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # group=True: conditional branches (rnn vs transformer knobs) get their own joint models.
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=spec.sampler.n_startup_trials,
            multivariate=True,
            group=True,
        )


def load_study(spec: StudySpec, storage_url: str | None, worker_salt: int = 0) -> optuna.Study:
    """The prepared study with its sampler and pruner; `worker_salt` keeps this worker's sampler stream
    apart from its siblings' (search.cli.cmd_worker picks it)."""
    study = optuna.create_study(
        study_name=spec.name,
        storage=create_storage(spec.name, storage_url),
        sampler=create_sampler(spec),
        pruner=create_pruner(spec),
        directions=list(spec.objective.directions),
        load_if_exists=True,
    )
    if len(study.directions) != len(spec.objective.directions):
        raise SpecError(
            f"study {spec.name} was created with {len(study.directions)} objective(s) and the spec now has "
            f"{len(spec.objective.directions)}: give the spec a new name (or delete the study)"
        )
    # A seeded sampler restarted in each process replays one random stream: a resumed study or a second
    # worker would repeat earlier trials. Offset the seed by the trials already there and the worker, so a
    # fresh single-process study stays reproducible and every later process draws anew.
    started = [
        t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING and not is_foreign(t)
    ]
    offset = len(started) + 7919 * worker_salt
    if offset:
        study.sampler = create_sampler(spec, offset)
    return study


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dataset_hash(dataset: str | None) -> str:
    """The prepared dataset's manifest content_hash, building a missing built-in dataset first."""
    from core.paths import DEFAULT_DATASET
    from data_prep.ensure import ensure_dataset
    from data_prep.manifest import load_manifest

    folder = Path(ensure_dataset(dataset or DEFAULT_DATASET))
    return str(load_manifest(folder, required=False).get("content_hash", "unknown"))


def prepare_study(spec: StudySpec, storage_url: str | None, *, tracking: bool = True) -> optuna.Study:
    """Create or load the study, record its provenance, enqueue baselines once, open the parent run."""
    # the dataset first: a missing one is a clear error that leaves no empty journal behind
    data_hash = dataset_hash(base_config_dict(spec).get("data", {}).get("dataset"))
    warm_from = None
    if spec.warm_start.sources and not study_exists(spec.name, storage_url):
        warm_from = resolve_sources(spec, storage_url)  # a wrong name must leave no empty study behind
    study = load_study(spec, storage_url)
    attrs = study.user_attrs
    _refuse_changed_space(study, spec)
    if attrs.get("dataset_hash") not in (None, data_hash):
        log.warning(
            "study %s was started on dataset %s but the data now hashes to %s; scores may not be comparable",
            spec.name,
            attrs["dataset_hash"],
            data_hash,
        )
    study.set_user_attr("dataset_hash", data_hash)
    study.set_user_attr("code_version", code_version())
    study.set_user_attr("spec", spec.source)
    study.set_user_attr("spec_data", json.dumps(spec.data, default=str))
    study.set_user_attr("spec_name", spec.name)
    with warnings.catch_warnings():  # experimental in Optuna 5; plot axes and the front's labels use it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(spec.objective.metrics))
    if not attrs.get("enqueued") and spec.enqueue:
        for item in spec.enqueue:
            study.enqueue_trial(item.params, user_attrs={"baseline": item.label})
        log.info("enqueued %d baseline trial(s)", len(spec.enqueue))
    study.set_user_attr("enqueued", True)
    if warm_from is not None:
        warm_start(study, spec, warm_from)
    elif spec.warm_start.sources and WARM_ATTR not in attrs:
        log.warning(
            "study %s existed before its spec's warm_start, which applies to a new study only", spec.name
        )
    tracker = StudyTracker(spec.name, attrs.get(PARENT_ATTR)) if tracking else None
    recover_stale_trials(study, tracker, sweep_runs=True)  # before any budget is counted: lost trials rerun
    if tracker is not None:
        parent = tracker.ensure_parent(
            {"dataset_hash": data_hash, "code_version": study.user_attrs["code_version"]}
        )
        study.set_user_attr(PARENT_ATTR, parent)
    return study


def _refuse_changed_space(study: optuna.Study, spec: StudySpec) -> None:
    """Optuna cannot change a parameter's distribution inside a study: every new trial would FAIL. Say so
    before any trial runs. (Budget, pruner and the like may change between runs.)"""
    if not study.user_attrs.get("spec_data"):
        return
    recorded = {p.path: p for p in spec_from_study(study).space}
    for param in spec.space:
        old = recorded.get(param.path)
        if old is not None and (old.kind, old.choices, old.low, old.high, old.log, old.step) != (
            param.kind,
            param.choices,
            param.low,
            param.high,
            param.log,
            param.step,
        ):
            raise SpecError(
                f"space.{param.path} differs from what study {spec.name!r} was started with "
                f"({_describe(old)} -> {_describe(param)}); Optuna cannot change a distribution within "
                "a study: give the spec a new name (a new study) or restore the old range"
            )


def _describe(param: Any) -> str:
    if param.kind == "categorical":
        return f"choices {list(param.choices or {})}"
    return f"{param.kind} {param.low}..{param.high}{' log' if param.log else ''}"


def spec_from_study(study: optuna.Study) -> StudySpec:
    """The spec recorded on the study (workers on other machines run exactly what `study` started)."""
    data = study.user_attrs.get("spec_data")
    if not data:
        raise RuntimeError(
            f"study {study.study_name!r} has no recorded spec; "
            f"start it with `make study NAME={study.study_name}` first"
        )
    return parse_spec(
        json.loads(data), default_name=study.study_name, source=study.user_attrs.get("spec", "")
    )


def count_finished(study: optuna.Study) -> int:
    """Finished trials against the budget (search.study.trial_budget.counted says which)."""
    return len(counted(study.get_trials(deepcopy=False)))


def summary(study: optuna.Study) -> dict[str, Any]:
    """Counts by state and the best trial so far (for progress lines and the CLI's last words)."""
    every = study.get_trials(deepcopy=False)
    trials = [t for t in every if not is_foreign(t)]  # a warm start's history is not this study's work
    counts = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    best, front = None, None
    if len(study.directions) > 1:
        front = sorted(t.number for t in pareto.pareto_trials(study))
    else:
        sign = pareto.sign(study.direction)
        done = [t for t in trials if t.state == TrialState.COMPLETE and feasible(t)]
        best = max(done, key=lambda t: (sign * t.value, -t.number), default=None)
    return {
        "n": len(trials),
        "finished": counts["COMPLETE"] + counts["PRUNED"] + counts["FAIL"],
        "complete": counts["COMPLETE"],
        "pruned": counts["PRUNED"],
        "failed": counts["FAIL"],
        "running": counts["RUNNING"],
        "best_value": None if best is None else best.value,
        "best_trial": None if best is None else best.number,
        "pareto": front,  # a multi-objective study's front (trial numbers), else None
        "warm": len(every) - len(trials),
    }


def best_text(info: dict[str, Any]) -> str:
    """The best so far in a few words, from summary(): one score, or a multi-objective study's front."""
    if info["pareto"] is not None:
        front = info["pareto"]
        return f"Pareto front of {len(front)} trial(s) {front}" if front else "no Pareto front yet"
    if info["best_value"] is None:
        return "best -"
    return f"best {info['best_value']:.2f} (trial {info['best_trial']})"


def load_existing(name: str, storage_url: str | None) -> optuna.Study:
    """A study that must already exist (worker, export, report)."""
    from search.study.storage import journal_path

    if storage_url is None and not journal_path(name).exists():  # don't leave an empty journal behind
        raise LookupError(
            f"no study {name!r}: {journal_path(name)} does not exist; run `make study NAME={name}`"
        )
    storage = create_storage(name, storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise LookupError(
            f"no study {name!r} in {describe_storage(name, storage_url)}; run `make study NAME={name}`"
        ) from None
