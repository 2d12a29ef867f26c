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
from search.space import objective_metric
from training.config import load_train_config, save_train_config

log = logging.getLogger(__name__)


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The k best complete trials that recorded their config, best first."""
    complete = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "config" in t.user_attrs
    ]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: t.value, reverse=reverse)[:k]


def provenance(study: optuna.Study, trial: FrozenTrial, rank: int) -> str:
    attrs = study.user_attrs
    params = "\n".join(f"  {k}: {v!r}" for k, v in trial.params.items())
    return (
        f"exported by `python -m search export {study.study_name}` (rank {rank})\n"
        f"study: {study.study_name}\n"
        f"trial: {trial.number}\n"
        f"score: {trial.value:.4f} (best {objective_metric(trial)} of the trial)\n"
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
