"""Export the best trial(s) of a study as runnable TrainConfig YAML files.

    python -m search export transformer --top 3
    python -m training train studies/exports/transformer.best.yaml

The file is the trial's full resolved TrainConfig (exactly what the trial trained) with its provenance
(study, trial, score, dataset hash, code version, date) as YAML comments, so strict loading accepts it.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from core.paths import exports_dir
from search.spec.objectives import feasible, trial_metric
from search.spec.pareto import pareto_trials, sign
from training.config import load_train_config, save_train_config

log = logging.getLogger(__name__)


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The k best complete, feasible trials that recorded their config, best first on the (first)
    objective."""
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "config" in t.user_attrs and feasible(t)
    ]
    first = sign(study.directions[0])
    return sorted(complete, key=lambda t: (-first * t.values[0], t.number))[:k]


def scores_text(study: optuna.Study, trial: FrozenTrial) -> str:
    """`84.1234` for one objective; `val/avg_score=84.1234, decode/ms_per_formula=12.5000` for several."""
    if len(trial.values) == 1:
        return f"{trial.values[0]:.4f}"
    names = study.metric_names or [f"objective {i}" for i in range(len(trial.values))]
    return ", ".join(f"{n}={v:.4f}" for n, v in zip(names, trial.values, strict=True))


def provenance(study: optuna.Study, trial: FrozenTrial, rank: int, how: str = "") -> str:
    attrs = study.user_attrs
    params = "\n".join(f"  {k}: {v!r}" for k, v in trial.params.items())
    return (
        f"exported by `python -m search export {study.study_name}{how}` (rank {rank})\n"
        f"study: {study.study_name}\n"
        f"trial: {trial.number}\n"
        f"score: {scores_text(study, trial)} (best {trial_metric(trial)} of the trial)\n"
        f"dataset_hash: {attrs.get('dataset_hash', 'unknown')}\n"
        f"code_version: {attrs.get('code_version', 'unknown')}\n"
        f"date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
        f"retrain: python -m training train THIS_FILE [--set trainer.epochs=N]\n"
        f"sampled params:\n{params}"
    )


def export_top(study: optuna.Study, k: int = 1, folder: Path | None = None) -> list[tuple[FrozenTrial, Path]]:
    """Write <study>.best.yaml and, for k > 1, <study>.top<r>.yaml for ranks 2..k."""
    folder = Path(folder or exports_dir())
    trials = top_trials(study, max(k, 1))
    if not trials:
        raise LookupError(
            f"study {study.study_name!r} has no complete trial to export yet; "
            f"run `make study NAME={study.study_name}`"
        )
    for stale in folder.glob(f"{study.study_name}.top*.yaml"):  # ranks of an earlier, longer export
        stale.unlink()
    written = []
    for rank, trial in enumerate(trials, start=1):
        name = f"{study.study_name}.best.yaml" if rank == 1 else f"{study.study_name}.top{rank}.yaml"
        config = load_train_config(trial.user_attrs["config"])  # re-validated: an export must load
        path = folder / name
        save_train_config(config, path, header=provenance(study, trial, rank))
        written.append((trial, path))
    return written


def export_pareto(study: optuna.Study, folder: Path | None = None) -> list[tuple[FrozenTrial, Path]]:
    """Write <study>.pareto-<K>.yaml for every trial of a multi-objective study's Pareto front, K = 1 the
    most accurate (the first objective)."""
    if len(study.directions) < 2:
        raise LookupError(
            f"study {study.study_name!r} has one objective: its front is its best trial "
            f"(make export NAME={study.study_name})"
        )
    front = pareto_trials(study)
    if not front:
        raise LookupError(
            f"study {study.study_name!r} has no complete, feasible trial yet; "
            f"run `make study NAME={study.study_name}`"
        )
    folder = Path(folder or exports_dir())
    for stale in folder.glob(f"{study.study_name}.pareto-*.yaml"):  # an earlier, longer front
        stale.unlink()
    written = []
    for rank, trial in enumerate(front, start=1):
        path = folder / f"{study.study_name}.pareto-{rank}.yaml"
        config = load_train_config(trial.user_attrs["config"])
        save_train_config(config, path, header=provenance(study, trial, rank, " --pareto"))
        written.append((trial, path))
    return written
