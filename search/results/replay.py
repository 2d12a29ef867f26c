"""Exact replay: train a study's trial again from what the study recorded, and compare the curves.

    python -m search replay smoke --trial 3        # = make replay NAME=smoke TRIAL=3

The trial's resolved config (seed included) is trained into a new run folder
(runs/replays/<study>/trial-<n>-<time>) and a new MLflow run of the study's experiment
(`replay-trial-<n>`, tagged with the trial it replays). Data that hashes differently from the study's is
an error naming both hashes (other data cannot reproduce the trial); another code version is a warning.
On CPU, with the same thread count, the replayed per-epoch objective equals the recorded one exactly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

from core.paths import runs_dir
from search.spec.objectives import EPOCH_VALUES_ATTR, trial_metric
from search.study import studies
from search.tracking import StudyTracker, tracker_or_none
from training.config import load_train_config

log = logging.getLogger(__name__)


@dataclass
class Replay:
    trial: int
    metric: str
    recorded: dict[int, float]  # epoch -> the value the trial reported to Optuna
    replayed: dict[int, float]  # epoch -> the replay's value of the same metric
    out_dir: Path

    @property
    def identical(self) -> bool:
        """Every epoch the trial reported came out the same, to the last bit."""
        return bool(self.recorded) and all(self.replayed.get(e) == v for e, v in self.recorded.items())

    def table(self) -> str:
        rows = [f"{'epoch':>5}  {'recorded':>12}  {'replayed':>12}"]
        for epoch in sorted(set(self.recorded) | set(self.replayed)):
            old, new = self.recorded.get(epoch), self.replayed.get(epoch)
            mark = "" if old is None or new is None else ("  =" if old == new else f"  {new - old:+.3g}")
            rows.append(f"{epoch:>5}  {_fmt(old):>12}  {_fmt(new):>12}{mark}")
        return "\n".join(rows)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def replay_trial(study: optuna.Study, number: int, *, tracking: bool = True) -> Replay:
    """Train trial `number` of `study` again from its recorded config; see the module docstring."""
    from training.loop import train

    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is None or "config" not in trial.user_attrs:
        known = [t.number for t in study.get_trials(deepcopy=False) if "config" in t.user_attrs]
        raise LookupError(
            f"study {study.study_name!r} has no trial {number} with a recorded config; trials that have one: "
            f"{known[:20]}{' …' if len(known) > 20 else ''}"
        )
    config = load_train_config(trial.user_attrs["config"])
    recorded_hash = study.user_attrs.get("dataset_hash")
    current_hash = studies.dataset_hash(config.data.dataset)
    if recorded_hash and recorded_hash != current_hash:
        raise ValueError(
            f"dataset {config.data.dataset!r} now hashes to {current_hash}, but study {study.study_name!r} "
            f"ran on {recorded_hash}: other data cannot reproduce trial {number}; restore the dataset the "
            "study used (or prepare it again from the same source with the same options)"
        )
    recorded_code, current_code = study.user_attrs.get("code_version"), studies.code_version()
    if recorded_code and recorded_code != current_code:
        log.warning(
            "study %s ran code %s, this is %s: the replay may differ where the code changed",
            study.study_name, recorded_code, current_code,
        )  # fmt: skip
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = runs_dir() / "replays" / study.study_name / f"trial-{number:04d}-{stamp}"
    callbacks = []
    tracker: StudyTracker | None = tracker_or_none(study.study_name, None) if tracking else None
    run = None
    if tracker is not None:
        tags = {"search.role": "replay", "search.replay_of": number}
        run = tracker.open_run(f"replay-trial-{number}", tags)
        callbacks.append(run)
    status = "FAILED"
    try:
        result = train(config, out, callbacks=callbacks)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if run is not None:
            run.finish(status)
    metric = trial_metric(trial)
    replayed = {int(row["epoch"]): float(row[metric]) for row in result.history if metric in row}
    # a multi-objective trial reports nothing to Optuna: its curve is a user attr
    recorded = dict(trial.intermediate_values) or {
        int(epoch): value for epoch, value in trial.user_attrs.get(EPOCH_VALUES_ATTR, {}).items()
    }
    return Replay(number, metric, recorded, replayed, out)
