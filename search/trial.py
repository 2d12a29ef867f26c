"""One trial: sampled params -> TrainConfig -> training.loop.train, reporting and pruning every epoch.

    python -m search study smoke          # each trial runs TrialObjective.__call__

Outcomes: a finished run returns its best objective value (COMPLETE); the pruner's verdict, an
impossible point (constraint / invalid model), NaN loss or a second out-of-memory end it PRUNED with
a `reason` user attr (TPE learns from pruned trials, not from failed ones); any other exception is
recorded with its traceback and re-raised so Optuna marks it FAIL and the study goes on. An error that
leaves the GPU unusable (training.cuda_faults) FAILs the trial and sets `fatal`: the worker then stops, so
its launcher replaces it with a fresh process. A trial's last.pt (weights + optimizer, the resume point) is
deleted once the trial's end is stored (`drop_resume_point`, a study callback), and kept when it was cut
short or its end could not be stored: then it runs again, from there.
"""

from __future__ import annotations

import gc
import logging
import math
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from core.paths import runs_dir
from core.typed_config import ConfigError, set_path, to_dict
from models import validate as validate_model
from search.spec.objectives import (
    DECODE_CONSTRAINT_KEY,
    EPOCH_VALUES_ATTR,
    decode_violation,
    is_decode_constraint,
    objective_values,
    set_constraint,
)
from search.spec.parse import StudySpec
from search.spec.space import ACCUM_PATH, build_config_dict, suggest_params, violated_constraints
from search.study.devices import gpu_share
from search.study.epoch_budget import BUDGET_REASON, epochs_spent
from search.study.recovery import INTERRUPTED, record_worker
from search.tracking import StudyTracker, finish_trial_run
from training.callbacks import Callback
from training.config import TrainConfig, load_train_config
from training.cuda_faults import is_out_of_memory, is_sticky_cuda_error
from training.errors import NonFiniteLossError
from training.mlflow_logging import MlflowRun
from training.progress import ProgressLine

log = logging.getLogger(__name__)


def run_training(config: TrainConfig, out_dir: Path, callbacks: list[Callback], resume: bool = False) -> Any:
    """The seam tests replace with a fast fake: trains one config, returns a training.loop.TrainResult."""
    from training.loop import train

    return train(config, out_dir, callbacks=callbacks, resume=resume)


class PruneTrial(optuna.TrialPruned):
    """TrialPruned carrying why (user attr `reason`) and when (`prune_epoch`)."""

    def __init__(self, reason: str, epoch: int | None = None, detail: str = ""):
        self.reason, self.epoch = reason, epoch
        super().__init__(f"pruned ({reason}) at epoch {epoch}{': ' + detail if detail else ''}")


class _ReportCallback(Callback):
    """Reports the objective to Optuna at every validated epoch and prunes when the pruner says so (a
    multi-objective study cannot report: `report=False` keeps only the NaN check)."""

    def __init__(
        self, trial: optuna.Trial, metric: str, report: bool = True, budget: tuple[int, int] | None = None
    ):
        self.trial, self.metric, self.report = trial, metric, report
        self.budget = budget  # (the study's total_epochs, this trial's epochs): search.study.epoch_budget
        self.curve: dict[str, float] = {}
        self.optuna_seconds = 0.0
        self.last_epoch = 0

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        self.last_epoch = epoch
        value = metrics.get(self.metric)
        if value is None:  # no validation this epoch
            if self.report:
                self._check_budget(epoch)
            return
        if not math.isfinite(float(value)):
            raise PruneTrial("nan", epoch, f"{self.metric} is {value}")
        if not self.report:  # the curve is kept for replay and the report, as a user attr
            self.curve[str(epoch)] = float(value)
            self.trial.set_user_attr(EPOCH_VALUES_ATTR, self.curve)
            return
        start = time.perf_counter()
        self.trial.report(float(value), epoch)
        prune = self.trial.should_prune()  # first: Hyperband records the rung value either way
        self.optuna_seconds += time.perf_counter() - start
        if prune:
            raise PruneTrial("pruner", epoch, f"{self.metric}={value:.3f}")
        self._check_budget(epoch)

    def _check_budget(self, epoch: int) -> None:
        """Cut at the study's epoch budget, unless this epoch is the trial's last (it completes)."""
        if self.budget is None or epoch >= self.budget[1]:
            return
        total = self.budget[0]
        if epochs_spent(self.trial.study, exclude=self.trial.number) + epoch >= total:
            raise PruneTrial(BUDGET_REASON, epoch, f"the study's {total} epochs are spent")


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class TrialObjective:
    """The Optuna objective for one study spec; `tracker` None runs without MLflow."""

    def __init__(
        self,
        spec: StudySpec,
        tracker: StudyTracker | None,
        base_context: dict[str, Any] | None = None,
        status: Callable[..., None] | None = None,
    ):
        self.spec, self.tracker = spec, tracker
        self.status = status  # where a trial's progress line goes (training.progress.ProgressLine's sink)
        self.context = base_context or {}
        self.last_overhead: dict[str, float] = {}
        self.interrupted: list[int] = []  # trials of this process cut short by Ctrl-C
        self.fatal: BaseException | None = None  # an error that left this process's GPU unusable

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        try:
            return self._objective(trial)
        except KeyboardInterrupt:
            trial.set_user_attr("reason", INTERRUPTED)  # runner.requeue_interrupted enqueues it again
            self.interrupted.append(trial.number)
            raise

    def _objective(self, trial: optuna.Trial) -> float | list[float]:
        start = time.perf_counter()
        record_worker(trial)
        params = suggest_params(trial, self.spec, self.context)
        try:
            config = self._resolve(trial, params)
        except PruneTrial as exc:
            if self.tracker is not None:  # an impossible point still gets its (KILLED) run
                with self.tracker.trial_run(
                    trial.number, params, build_config_dict(self.spec, params)
                ) as run:
                    finish_trial_run(run, "PRUNED", {"search.reason": exc.reason})
            raise
        optuna_s = time.perf_counter() - start
        if self.tracker is None:
            return self._run(trial, config, None)
        with self.tracker.trial_run(trial.number, params, to_dict(config)) as run:
            if run.error:
                trial.set_user_attr("tracking_error", run.error)
            try:
                value = self._run(trial, config, run)
            except PruneTrial as exc:
                tags = {"search.reason": exc.reason, "search.prune_epoch": exc.epoch}
                finish_trial_run(run, "PRUNED", tags)
                raise
            except Exception as exc:
                finish_trial_run(run, "FAIL", {"search.reason": "exception", "search.error": repr(exc)[:500]})
                raise
            values = value if isinstance(value, list) else [value]
            tags = {f"search.best_{m}": v for m, v in zip(self.spec.objective.metrics, values, strict=True)}
            finish_trial_run(run, "COMPLETE", tags)
        self.last_overhead = {
            "mlflow_s": run.seconds,
            "optuna_s": optuna_s,
            "trial_s": time.perf_counter() - start,
        }
        return value

    def _resolve(self, trial: optuna.Trial, params: dict[str, Any]) -> TrainConfig:
        """The trial's TrainConfig; impossible points are pruned with the constraint they break."""
        data = build_config_dict(self.spec, params)
        try:
            config = load_train_config(data)
        except ConfigError as exc:
            self._infeasible(trial, "invalid_config", str(exc))
        resolved = to_dict(config)
        broken = violated_constraints(self.spec, resolved)
        set_constraint(trial, "spec", float(len(broken)))
        if broken:
            self._infeasible(trial, "constraint", "; ".join(broken))
        try:
            validate_model(config.model)  # the model family's own checks, beyond the spec's constraints
        except ConfigError as exc:
            self._infeasible(trial, "invalid_config", str(exc))
        trial.set_user_attr("config", resolved)
        return config

    @staticmethod
    def _infeasible(trial: optuna.Trial, reason: str, detail: str) -> None:
        trial.set_user_attr("reason", reason)
        trial.set_user_attr("detail", detail[:2000])
        raise PruneTrial(reason, None, detail)

    def _run(self, trial: optuna.Trial, config: TrainConfig, run: MlflowRun | None) -> float | list[float]:
        try:
            result = self._train_with_oom_retry(trial, config, run)
        except PruneTrial as exc:
            trial.set_user_attr("reason", exc.reason)
            trial.set_user_attr("prune_epoch", exc.epoch)
            raise
        except NonFiniteLossError as exc:
            trial.set_user_attr("reason", "nan")
            trial.set_user_attr("prune_epoch", exc.epoch)
            raise PruneTrial("nan", exc.epoch, str(exc)) from None
        except Exception as exc:
            fatal = is_sticky_cuda_error(exc)
            trial.set_user_attr("reason", "cuda_fatal" if fatal else "exception")
            trial.set_user_attr("traceback", traceback.format_exc()[-8000:])
            log.warning("trial %d failed: %r", trial.number, exc)
            if fatal:
                self.fatal = exc
            raise
        for key in ("val/exact_match", "val/exprate_le1", "val/exprate_le2"):
            if key in (result.best_metrics or {}):  # ExpRate, the handwriting field's headline, per trial
                trial.set_user_attr(key.replace("/", "_"), float(result.best_metrics[key]))
        decode_speed = getattr(result, "decode_speed", None) or {}
        for key, value in decode_speed.items():
            trial.set_user_attr(key.replace("/", "_"), value)  # decode_ms_per_formula, decode_formulas_per_s
        if decode_speed and gpu_share() > 1:  # timed while other trials ran on the same GPU
            trial.set_user_attr("decode_speed_shared", gpu_share())
        self._judge_decode_constraints(trial, decode_speed, run)
        values = objective_values(self.spec.objective, result)
        return values if self.spec.objective.multi else values[0]

    def _judge_decode_constraints(
        self, trial: optuna.Trial, decode_speed: dict[str, float], run: MlflowRun | None
    ) -> None:
        """A trial too slow for the spec's `decode.*` constraints completes with its score but is marked
        infeasible: export and the best trial skip it, and TPE samples away from it."""
        if not any(is_decode_constraint(c) for c in self.spec.constraints):
            return
        amount, broken = decode_violation(self.spec.constraints, decode_speed)
        set_constraint(trial, DECODE_CONSTRAINT_KEY, amount)
        if broken:
            trial.set_user_attr("constraint_broken", broken)
            log.info("trial %d breaks %s", trial.number, "; ".join(broken))
            if run is not None:
                run.set_tags({"search.constraint_broken": "; ".join(broken)[:500]})

    def _resume_point(self, trial: optuna.Trial, run: MlflowRun | None) -> tuple[Path, int]:
        """The folder the trial trains in and the epoch it continues after. A rerun of a trial cut short
        (Ctrl-C, SIGTERM, a dead worker) continues in that trial's folder from its last.pt, with the
        epochs already done reported to Optuna again under their own numbers."""
        own = runs_dir() / "studies" / self.spec.name / f"trial-{trial.number:04d}"
        source = trial.user_attrs.get("requeued_from")
        if source is None:  # most trials: no storage read
            return own, 0
        cut = next((t for t in trial.study.get_trials(deepcopy=False) if t.number == source), None)
        folder = Path(cut.user_attrs.get("trial_dir", own.with_name(f"trial-{source:04d}"))) if cut else own
        last = folder / "last.pt"
        if cut is None or not last.exists():
            return own, 0
        from training.checkpoint import load_checkpoint

        state = load_checkpoint(last)
        epoch, metric = int(state["epoch"]), self.spec.objective.metric
        # from the checkpoint, not the cut trial's reports: it may have died between saving and reporting
        done = {
            int(r["epoch"]): float(r[metric]) for r in state["history"] if metric in r and r["epoch"] <= epoch
        }
        if self.spec.objective.multi:  # nothing is reported: the curve continues in the user attr
            trial.set_user_attr(EPOCH_VALUES_ATTR, {str(e): v for e, v in done.items()})
        else:
            for done_epoch, value in done.items():
                trial.report(value, done_epoch)
        trial.set_user_attr("resumed_at_epoch", epoch)
        if run is not None:
            run.set_tags({"search.resumed_from": source, "search.resumed_at_epoch": epoch})
        log.info("trial %d continues trial %d from epoch %d (%s)", trial.number, source, epoch, last)
        return folder, epoch

    def _train_with_oom_retry(self, trial: optuna.Trial, config: TrainConfig, run: MlflowRun | None) -> Any:
        out_dir, resumed_at = self._resume_point(trial, run)
        trial.set_user_attr("trial_dir", str(out_dir))
        if resumed_at == 0:  # a fresh trial must not continue a stale last.pt (an older study's)
            (out_dir / "last.pt").unlink(missing_ok=True)
        resume = resumed_at > 0
        for attempt in (0, 1):
            objective = self.spec.objective
            total = self.spec.budget.total_epochs
            budget = None if total is None else (total, config.trainer.epochs)
            callback = _ReportCallback(trial, objective.metric, report=not objective.multi, budget=budget)
            callback.last_epoch = resumed_at
            if objective.multi:  # a resumed trial's curve goes on from its done epochs
                callback.curve = dict(trial.user_attrs.get(EPOCH_VALUES_ATTR, {}))
            callbacks: list[Callback] = [callback] if run is None else [run, callback]
            if self.status is not None:
                callbacks.append(ProgressLine(self.status, prefix=f"trial {trial.number}: "))
            message = None
            try:
                return run_training(config, out_dir, callbacks, resume=resume)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            # Outside the except block: its traceback held the failed step's frames and activations,
            # which the allocator could not have given back.
            _free_memory()
            accum = config.trainer.grad_accum_steps * 2
            if attempt == 1 or config.trainer.batch_size % accum:
                trial.set_user_attr("oom_retries", attempt)
                raise PruneTrial("oom", callback.last_epoch, message)
            # the epochs done stay done: the retry continues from the last.pt they left (a spec with
            # save_every_epoch: false has none, and its retry starts over; Optuna keeps the first reports)
            resume = (out_dir / "last.pt").exists()
            if resume:
                from training.checkpoint import load_checkpoint

                resumed_at = int(load_checkpoint(out_dir / "last.pt")["epoch"])
            log.warning("trial %d: out of memory (%s); retrying with grad_accum_steps=%d%s", trial.number,
                        message, accum, f" from epoch {resumed_at + 1}" if resume else "")
            trial.set_user_attr("oom_retries", 1)
            if run is not None:
                run.set_tags({"search.oom_retry": accum})
            data = to_dict(config)
            set_path(data, ACCUM_PATH, accum)
            config = load_train_config(data)
            trial.set_user_attr("config", to_dict(config))
        raise AssertionError("unreachable")


def drop_resume_point(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """A study callback: a trial whose end is stored (complete, pruned, failed) will not resume, so its
    last.pt, the size of the model and optimizer together, would only fill the disk (best.pt stays, for
    export and MLflow). Optuna runs callbacks only after the trial's state is written; a trial cut short
    (Ctrl-C, a storage that stopped taking writes) never gets here and keeps its resume point."""
    folder = trial.user_attrs.get("trial_dir")
    if folder and trial.state.is_finished():
        (Path(folder) / "last.pt").unlink(missing_ok=True)
