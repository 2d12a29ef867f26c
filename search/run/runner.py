"""Running a prepared study's trials in this process (search.study.studies prepares it).

    python -m search study smoke --trials 4      # studies.prepare_study, then run_worker (or several)
    python -m search worker smoke --storage URL  # run_worker against an existing study

A worker recovers trials lost with a dead sibling, requeues trials Ctrl-C cut short, releases GPU memory
between trials and keeps the study's parent MLflow run summary current.
"""

from __future__ import annotations

import logging
import os
import traceback
from typing import Any

import optuna
from optuna.trial import TrialState

from core.typed_config import flatten
from search.spec.config_paths import base_config_dict, resolved_base
from search.spec.objectives import trial_metric
from search.spec.parse import StudySpec
from search.study.devices import release_gpu_memory
from search.study.epoch_budget import epochs_spent, stop_at_epoch_budget
from search.study.recovery import recover_stale_trials, worker_of
from search.study.retrying_storage import StorageUnreachable
from search.study.studies import load_study, summary
from search.study.trial_budget import budget_taken
from search.tracking import PARENT_ATTR, StudyTracker, tracker_or_none
from search.trial import TrainFn, TrialObjective, drop_resume_point

log = logging.getLogger(__name__)


def run_worker(
    spec: StudySpec,
    n_trials: int,
    storage_url: str | None,
    *,
    tracking: bool = True,
    callbacks: list[Any] = (),
    timeout: float | None = None,
    worker_salt: int = 0,
    status: Any = None,
    train_fn: TrainFn | None = None,
    share_budget: bool = False,
) -> optuna.Study:
    """Run `n_trials` trials of the (already prepared) study in this process; `worker_salt` keeps this
    worker's sampler stream apart from the others' (`search worker` passes its launch index or its pid);
    `status(text, force=False, epoch_seconds=None)` receives each trial's progress line; `train_fn` replaces
    training.loop.train (tests and benchmarks pass theirs); `share_budget`: stop at the spec's n_trials
    counted over every worker of the study, exactly (search.study.trial_budget)."""
    logging.getLogger("optuna.study._optimize").addFilter(_QUIET_INTERRUPTS)
    study = load_study(spec, storage_url, worker_salt)
    tracker = tracker_or_none(spec.name, study.user_attrs.get(PARENT_ATTR)) if tracking else None
    # `when:` on an unsearched path reads the resolved base, defaults included (model.kind: transformer)
    context = flatten(resolved_base(base_config_dict(spec)))
    budget = spec.budget.n_trials if share_budget else None
    objective = TrialObjective(spec, tracker, train_fn=train_fn, context=context, status=status,
                               budget=budget)  # fmt: skip
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    recover_stale_trials(study, tracker)
    total = spec.budget.total_epochs
    if total is not None and epochs_spent(study) >= total:
        return study  # spent already: a rerun of a finished study starts nothing
    try:
        study.optimize(
            objective,
            n_trials=n_trials,
            timeout=timeout if timeout is not None else spec.budget.timeout,
            catch=(Exception,),
            callbacks=_study_callbacks(objective, tracker, list(callbacks), budget, total),
        )
    except KeyboardInterrupt:
        requeue_interrupted(study, objective.interrupted)
        raise
    except (AssertionError, OSError, UnboundLocalError) as exc:  # StorageUnreachable itself passes through
        fault = _storage_fault(study, exc)
        if fault is None:
            raise
        raise fault from fault.__cause__
    if objective.fatal is not None:
        raise GpuUnusable(objective.fatal)
    return study


def _study_callbacks(objective, tracker, extra: list, budget: int | None, total_epochs: int | None) -> list:
    """After each trial, in order: recover a dead sibling's trial, drop the resume point, the caller's
    callbacks, stop on a broken GPU, release GPU memory, stop at the epoch and trial budgets."""

    def recover_after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        recover_stale_trials(study, tracker)  # a sibling worker that died meanwhile

    def stop_if_gpu_unusable(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if objective.fatal is not None:
            study.stop()

    def release_memory(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if objective.fatal is None:  # a dead CUDA context would raise the same error again
            release_gpu_memory()

    def stop_at_budget(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # Trials other workers are running count too, or N workers would each start one more; a trial
        # that starts anyway past a full budget trains nothing (TrialObjective checks its place)
        if budget_taken(study, budget):
            study.stop()

    stops = [] if total_epochs is None else [stop_at_epoch_budget(total_epochs)]
    stops += [] if budget is None else [stop_at_budget]
    return [recover_after_trial, drop_resume_point, *extra, stop_if_gpu_unusable, release_memory, *stops]


class GpuUnusable(RuntimeError):
    """A trial left this process's CUDA context broken (a device-side assert, an illegal memory access):
    every later kernel would fail too, so the worker ends; a launcher starts a fresh process instead."""

    def __init__(self, cause: BaseException):
        reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        super().__init__(
            f"this worker's GPU is unusable after a CUDA error ({reason}); its trial was failed. The "
            "study goes on in a new process: run the same command again (a launcher does it by itself)"
        )


class StorageLost(RuntimeError):
    """The study's storage stopped taking writes (a full disk, a folder made read-only): nothing more can
    be recorded, so the worker stops. When that happens as a trial ends, Optuna cannot record the end and
    hides the cause behind `AssertionError: Should not reach`; this says what happened and what to do."""

    def __init__(self, study: optuna.Study, cause: OSError):
        where = f": {cause.filename}" if cause.filename else ""
        running = _own_running(study)
        if running is None:  # unreadable too: whether a trial was left running is unknown here
            left = "a trial this process was running is failed as worker_died and run again"
        elif running:
            left = f"trial(s) {running}, left RUNNING, are failed as worker_died and run again"
        else:
            left = "the study continues (no trial was left running)"
        super().__init__(
            f"study {study.study_name}'s storage stopped taking writes ({cause.strerror or cause}{where}), "
            f"so the study stopped. Make it writable again (free disk space, fix permissions) and run the "
            f"same command: {left}"
        )


_STORAGE_CODE = os.path.dirname(optuna.storages.__file__) + os.sep


def _storage_fault(study: optuna.Study, exc: BaseException) -> RuntimeError | None:
    """What a storage failure behind `exc` means for the user (Optuna hides it behind its own error when it
    cannot record a trial's end), or None when `exc` is not the storage's."""
    unreachable = _in_chain(exc, StorageUnreachable)
    if unreachable is not None:
        return unreachable
    cause = storage_write_error(exc)
    if cause is None:
        return None
    lost = StorageLost(study, cause)
    lost.__cause__ = cause
    return lost


def _in_chain(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: BaseException | None = exc
    for _ in range(20):  # a cycle in a hand-made chain must not hang the worker
        if seen is None or isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def storage_write_error(exc: BaseException) -> OSError | None:
    """The OSError that Optuna's storage raised behind `exc` (itself, or the one Optuna's `Should not
    reach` was raised while handling), or None: an OSError from anywhere else (a callback, the terminal)
    is not the storage's."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            frames = traceback.extract_tb(seen.__traceback__)
            return seen if any(f.filename.startswith(_STORAGE_CODE) for f in frames) else None
        if not isinstance(seen, AssertionError):
            return None
        seen = seen.__cause__ or seen.__context__
    return None


def _own_running(study: optuna.Study) -> list[int] | None:
    """This process's RUNNING trials; None when the storage cannot be read either."""
    try:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    except Exception:
        return None
    return [t.number for t in running if (worker_of(t) or {}).get("pid") == os.getpid()]


def requeue_interrupted(study: optuna.Study, numbers: list[int]) -> list[int]:
    """Enqueue again the params of this process's trials that Ctrl-C cut short (Optuna marks them FAIL),
    so resuming the study runs them (a baseline keeps its label) instead of losing them."""
    trials = study.get_trials(deepcopy=False)
    done = {t.user_attrs.get("requeued_from") for t in trials}
    requeued = []
    for trial in trials:
        attrs = trial.user_attrs
        if trial.number not in numbers or trial.state != TrialState.FAIL or trial.number in done:
            continue
        keep = {k: attrs[k] for k in ("baseline",) if k in attrs}
        study.enqueue_trial(trial.params, user_attrs={**keep, "requeued_from": trial.number})
        requeued.append(trial.number)
    if requeued:
        log.warning("interrupted trial(s) %s enqueued again: resuming the study runs them", requeued)
    return requeued


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a full traceback for a trial ended by Ctrl-C; the user pressed it, so drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            record.exc_info, record.exc_text = None, None
        return True


_QUIET_INTERRUPTS = _NoInterruptTraceback()  # one instance: addFilter keeps a filter once


def log_parent_summary(study: optuna.Study, tracker: StudyTracker) -> None:
    """The parent run's figures and the best config so far (search.tracking writes them)."""
    from search.results.figures import figures_html, study_figures

    if tracker.parent_run_id is None:
        return
    info = summary(study)
    try:
        figures, skipped = study_figures(study)
        html = figures_html(figures, skipped, f"study {study.study_name}")
    except Exception as exc:  # plots are a convenience: the summary goes on without them
        log.warning("could not draw the study's figures: %s", exc)
        html = None
    # summary's best: Optuna's own best_trial may be a warm start's foreign record
    best = next((t for t in study.get_trials(deepcopy=False) if t.number == info["best_trial"]), None)
    tracker.log_summary(info, best, trial_metric(best) if best else None, html)
