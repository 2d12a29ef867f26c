"""One trial, in the optuna-examples shape: suggest -> build the config -> train with a report callback ->
return the objective.

    python -m search study smoke          # each trial runs TrialObjective.__call__
    TrialObjective(spec, tracker, train_fn=fake)   # tests and benchmarks pass their own trainer

Outcomes: a finished run returns its best objective value (COMPLETE); the pruner's verdict, an impossible
point, NaN loss or a second out-of-memory end it PRUNED with a `reason` user attr (TPE learns from pruned
trials, not from failed ones); any other exception is recorded and re-raised, so Optuna marks it FAIL and
the study goes on (search.trial.outcomes). An error that leaves the GPU unusable FAILs the trial and sets
`fatal`: the worker then stops, so its launcher replaces it with a fresh process. A trial's last.pt (the
resume point) is deleted once the trial's end is stored (`drop_resume_point`, a study callback), and kept
when it was cut short: then it runs again, from there (search.trial.retry).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import optuna

from core.typed_config import to_dict
from search.spec.parse import StudySpec
from search.spec.space import build_config_dict, suggest_params
from search.study.recovery import INTERRUPTED, record_worker
from search.study.trial_budget import OVER_BUDGET, within_budget
from search.tracking import StudyTracker, complete_trial_run
from search.trial.outcomes import record_failure, record_result, resolve_config
from search.trial.reporting import PruneTrial, ReportCallback
from search.trial.retry import TrainFn, train_with_oom_retry
from training.cuda_faults import is_sticky_cuda_error
from training.loop import train
from training.progress import ProgressLine

__all__ = ["PruneTrial", "TrainFn", "TrialObjective", "drop_resume_point"]


class TrialObjective:
    """The Optuna objective for one study spec; `tracker` None runs without MLflow."""

    def __init__(
        self,
        spec: StudySpec,
        tracker: StudyTracker | None,
        *,
        train_fn: TrainFn | None = None,
        context: dict[str, Any] | None = None,
        status: Any = None,
        budget: int | None = None,
    ):
        self.spec, self.tracker = spec, tracker
        self.budget = budget  # the study's trial budget when this worker shares it with others
        self.train_fn = train_fn or train  # training.loop.train unless a test or benchmark passes one
        self.context = context or {}  # the resolved base's values, for `when:` on unsearched paths
        self.status = status  # where a trial's progress line goes (training.progress.ProgressLine's sink)
        self.last_overhead: dict[str, float] = {}
        self.interrupted: list[int] = []  # trials of this process cut short by Ctrl-C
        self.fatal: BaseException | None = None  # an error that left this process's GPU unusable

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        start = time.perf_counter()
        record_worker(trial)
        if self.budget is not None and not within_budget(trial.study, trial, self.budget):
            trial.set_user_attr("reason", OVER_BUDGET)  # not counted: the budget was full when it started
            raise optuna.TrialPruned("the study's trial budget is full: other workers took the last places")
        params = suggest_params(trial, self.spec, self.context)
        data = build_config_dict(self.spec, params)  # the trial's config: built once, checked once
        try:
            config, impossible = resolve_config(trial, self.spec, data), None
        except PruneTrial as exc:  # an impossible point still gets its (KILLED) MLflow run
            config, impossible = None, exc
        with self._trial_run(trial, params, data if config is None else to_dict(config)) as run:
            if impossible is not None:
                raise impossible
            optuna_s = time.perf_counter() - start
            callbacks, report = self._callbacks(trial, config, run)
            with self._requeued_on_interrupt(trial):  # recording a result or a failure included
                with self._failure_recorded(trial):
                    last_epoch = lambda: report.last_epoch  # noqa: E731
                    result = train_with_oom_retry(self.train_fn, trial, config, callbacks, last_epoch, run)
                value = record_result(trial, self.spec, result, run)
            if run is not None:
                complete_trial_run(run, self.spec.objective.metrics, value)
        if run is not None:
            seconds = {"mlflow_s": run.seconds, "optuna_s": optuna_s, "trial_s": time.perf_counter() - start}
            self.last_overhead = seconds
        return value

    def _trial_run(self, trial: optuna.Trial, params: dict[str, Any], config: dict[str, Any]):
        if self.tracker is None:
            return contextlib.nullcontext(None)
        return self.tracker.trial_run(trial, params, config)

    def _callbacks(self, trial: optuna.Trial, config: Any, run: Any) -> tuple[list[Any], ReportCallback]:
        objective, total = self.spec.objective, self.spec.budget.total_epochs
        budget = None if total is None else (total, config.trainer.epochs)
        report = ReportCallback(trial, objective.metric, report=not objective.multi, budget=budget, run=run)
        callbacks = [c for c in (run, report) if c is not None]
        if self.status is not None:
            callbacks.append(ProgressLine(self.status, prefix=f"trial {trial.number}: "))
        return callbacks, report

    @contextlib.contextmanager
    def _requeued_on_interrupt(self, trial: optuna.Trial):
        try:
            yield
        except KeyboardInterrupt:
            trial.set_user_attr("reason", INTERRUPTED)  # runner.requeue_interrupted enqueues it again
            self.interrupted.append(trial.number)
            raise

    @contextlib.contextmanager
    def _failure_recorded(self, trial: optuna.Trial):
        """A training that raised: NaN loss and a second out-of-memory prune the trial, anything else fails
        it (and one that left the GPU unusable stops this worker)."""
        try:
            yield
        except Exception as exc:
            if is_sticky_cuda_error(exc):
                self.fatal = exc
            failure = record_failure(trial, exc)
            if failure is exc:
                raise
            raise failure from None


def drop_resume_point(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """A study callback: a trial whose end is stored (complete, pruned, failed) will not resume, so its
    last.pt, the size of the model and optimizer together, would only fill the disk (best.pt stays, for
    export and MLflow). Optuna runs callbacks only after the trial's state is written; a trial cut short
    (Ctrl-C, a storage that stopped taking writes) never gets here and keeps its resume point."""
    folder = trial.user_attrs.get("trial_dir")
    if folder and trial.state.is_finished():
        (Path(folder) / "last.pt").unlink(missing_ok=True)
