"""Everything the search writes to MLflow (the one module of search/ that imports it): experiment =
study, one parent run per study with its summary, a child run per trial, and closing the runs of trials
whose worker died.

    python -m search study smoke && python -m search ui      # then open http://127.0.0.1:5000

The store is `sqlite:///mlruns/mlflow.db` with artifacts under `mlruns/` (or MLFLOW_TRACKING_URI). Runs
are written through MlflowClient with explicit run ids, so several worker processes can log into the
same study without fighting over a "current run", and every run is closed in `finally`.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any

import optuna
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState

from core.mlflow_store import StoreError, tracking_uri
from core.paths import mlruns_dir
from training.mlflow_logging import MlflowRun, store_uri

__all__ = ["TRACKING_ERRORS", "StudyTracker", "get_client", "store_uri", "tracker_or_none", "tracking_uri"]

log = logging.getLogger(__name__)

# Optuna trial state -> MLflow run status (the mapping).
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
PARENT_ATTR = "mlflow_parent_run_id"
TRACKING_ERRORS = (MlflowException, StoreError)  # what an unusable store raises: one line for the user


def get_client() -> MlflowClient:
    return MlflowClient(tracking_uri=store_uri())


# MLflow 3's UI opens untagged experiments in its GenAI (traces) view; ours are training runs.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def artifact_location(name: str, uri: str) -> str | None:
    """Where a study's artifacts go: under mlruns/ for a store on this machine; a tracking server's own
    artifact root (None) for a shared one, which workers on other machines can reach and a path on the
    machine that created the experiment they could not."""
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    return (mlruns_dir() / "artifacts" / name).resolve().as_uri()


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment named after the study, created on first use with artifacts under mlruns/."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":  # deleted in the UI: runs cannot be added to it
            log.warning("MLflow experiment %r was deleted; restoring it to log the study", name)
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    location = artifact_location(name, tracking_uri())
    try:
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
    except Exception:  # another worker created it between our lookup and create
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def finish_trial_run(run: MlflowRun, state: str, tags: dict[str, Any] | None = None) -> None:
    """End a trial's run with the MLflow status of its Optuna `state` (KILLED when unknown)."""
    run.finish(RUN_STATUS.get(state, "KILLED"), {"optuna.state": state, **(tags or {})})


class StudyTracker:
    """Opens the study's parent run (shared by every worker) and child runs for trials."""

    def __init__(self, study_name: str, parent_run_id: str | None = None, client: MlflowClient | None = None):
        self.study_name = study_name
        self.client = client or get_client()
        self.experiment_id = experiment_id(self.client, study_name)
        self.parent_run_id = parent_run_id

    def ensure_parent(self, tags: dict[str, Any] | None = None) -> str:
        """The study's parent run: reused when it exists in this store, else created (RUNNING)."""
        if self.parent_run_id is not None:
            try:
                self.client.get_run(self.parent_run_id)
                self.client.update_run(self.parent_run_id, status="RUNNING")
                return self.parent_run_id
            except Exception:
                log.info("parent run %s is not in %s; creating a new one", self.parent_run_id, tracking_uri())
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"study-{self.study_name}",
            tags={"optuna.study_name": self.study_name, "search.role": "study", **(tags or {})},
        )
        self.parent_run_id = run.info.run_id
        return self.parent_run_id

    def log_summary(
        self, info: dict[str, Any], best: Any, best_metric: str | None, figures: str | None
    ) -> None:
        """The parent run's summary: `figures` (one self-contained HTML), the best trial's config and
        value, the Pareto front of a multi-objective study and the trial counts (search.study.studies's
        summary `info`)."""
        if self.parent_run_id is None:
            return
        client, run_id = self.client, self.parent_run_id
        try:
            if figures is not None:
                client.log_text(run_id, figures, "figures.html")
            if best is not None:
                config = yaml.safe_dump(best.user_attrs.get("config", {}), sort_keys=False)
                client.log_text(run_id, config, "best_config.yaml")
                client.log_metric(run_id, "best/" + best_metric.replace("/", "_"), best.value)
                client.set_tag(run_id, "best_trial", best.number)
            if info["pareto"] is not None:  # a multi-objective study has a front, not a best trial
                client.set_tag(run_id, "pareto_front", " ".join(map(str, info["pareto"])) or "-")
            for key in ("complete", "pruned", "failed"):
                client.log_metric(run_id, f"trials/{key}", info[key])
        except Exception as exc:  # the study's results are in its storage; the summary is a convenience
            log.warning("could not log the study summary to MLflow: %s", exc)

    def close_orphaned_runs(self, study: optuna.Study, lost: list[int] = ()) -> list[str]:
        """Trial runs still RUNNING although their Optuna trial has finished (a dead worker's); a `lost`
        trial whose worker died before it opened its run gets a FAILED one, so every trial has its run."""
        states = {t.number: t for t in study.get_trials(deepcopy=False)}
        closed = []
        try:
            self._runs_for_lost_trials(lost)
            runs = self.client.search_runs(
                [self.experiment_id],
                filter_string="attributes.status = 'RUNNING' and tags.`search.role` = 'trial'",
            )
            for run in runs:
                number = run.data.tags.get("optuna.trial_number")
                trial = states.get(int(number)) if number is not None and number.isdigit() else None
                if trial is None or trial.state in (TrialState.RUNNING, TrialState.WAITING):
                    continue
                reason = trial.user_attrs.get("reason", trial.state.name.lower())
                self.client.set_tag(run.info.run_id, "search.reason", reason)
                self.client.set_terminated(run.info.run_id, status=RUN_STATUS.get(trial.state.name, "FAILED"))
                closed.append(run.info.run_id)
        except Exception as exc:  # the study's truth is in Optuna; a tracking hiccup must not stop it
            log.warning("could not close orphaned MLflow runs: %s", exc)
        return closed

    def _runs_for_lost_trials(self, numbers: list[int]) -> None:
        for number in numbers:
            found = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`optuna.trial_number` = '{number}' and tags.`search.role` = 'trial'",
                max_results=1,
            )
            if not found:
                tags = {"optuna.trial_number": number, "search.role": "trial", "search.reason": "worker_died"}
                run = self.open_run(f"trial-{number}", tags)
                finish_trial_run(run, "FAIL")

    def finish_parent(self, status: str = "FINISHED") -> None:
        if self.parent_run_id is not None:
            self.client.set_terminated(self.parent_run_id, status=status)

    def open_run(self, run_name: str, tags: dict[str, Any], *, config_at_start: bool = True) -> MlflowRun:
        """A run of the study's experiment (under the parent run when there is one). A store that broke
        mid-study costs the run, not the training: the MlflowRun then logs nothing and says why."""
        tags = {"optuna.study_name": self.study_name, **tags}
        if self.parent_run_id is not None:
            tags["mlflow.parentRunId"] = self.parent_run_id
        start = time.perf_counter()
        try:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
            child = MlflowRun(self.client, run.info.run_id, config_at_start=config_at_start)
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("%s trains without an MLflow run: %s", run_name, reason)
            child = MlflowRun(None, None, error=reason[:500], config_at_start=config_at_start)
        child.seconds += time.perf_counter() - start
        return child

    @contextmanager
    def trial_run(self, trial: Any, params: dict[str, Any], config: dict[str, Any]):
        """A child run `trial-<n>` for an Optuna trial, ended with the state the body leaves in: PRUNED
        (with the pruning's reason and epoch), FAIL (with the error), KILLED on Ctrl-C, COMPLETE when the
        body called complete_trial_run; never left RUNNING."""
        tags = {"optuna.trial_number": trial.number, "search.role": "trial"}
        child = self.open_run(f"trial-{trial.number}", tags, config_at_start=False)
        if child.error:
            trial.set_user_attr("tracking_error", child.error)
        # logged before training, so an impossible point's run shows what was sampled too
        child.log_config(config, {f"optuna.{k}": v for k, v in params.items()})
        try:
            yield child
        except KeyboardInterrupt:
            if not child.finished:
                finish_trial_run(child, "INTERRUPTED", {"search.reason": "interrupted"})
            raise
        except optuna.TrialPruned as exc:
            epoch = getattr(exc, "epoch", None)
            tags = {"search.reason": getattr(exc, "reason", "pruner")}
            if epoch is not None:
                tags["search.prune_epoch"] = epoch
            finish_trial_run(child, "PRUNED", tags)
            raise
        except Exception as exc:
            finish_trial_run(child, "FAIL", {"search.reason": "exception", "search.error": repr(exc)[:500]})
            raise
        except BaseException:
            if not child.finished:
                finish_trial_run(child, "FAIL")
            raise
        finally:
            if not child.finished:
                finish_trial_run(child, "INTERRUPTED")


def complete_trial_run(run: MlflowRun, metrics: tuple[str, ...], value: float | list[float]) -> None:
    """End a finished trial's run FINISHED, tagged with its objective value(s) (`search.best_<metric>`)."""
    values = value if isinstance(value, list) else [value]
    finish_trial_run(run, "COMPLETE", {f"search.best_{m}": v for m, v in zip(metrics, values, strict=True)})


def tracker_or_none(name: str, parent_run_id: str | None) -> StudyTracker | None:
    """A worker whose MLflow store broke after the study started still trains its trials (untracked)."""
    try:
        return StudyTracker(name, parent_run_id)
    except Exception as exc:
        log.warning("MLflow is unusable (%s): this worker's trials train without MLflow runs", exc)
        return None
