"""What the load benchmark counts once a study's workers are gone: every trial, every MLflow run, and the
database connections the workers held while they ran.

    watch = ConnectionWatch(dsn); watch.start(); ...; watch.stop()   # peak connections per database
    account(study, budget, runs, labels)  # states, duplicates, enqueued configs, RUNNING, MLflow one-to-one
    overhead(study, epoch_seconds)   # harness seconds per trial beyond the trainer's sleep
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from typing import Any

import optuna
from optuna.trial import TrialState

from search.study.recovery import rerun_trials, worker_of
from search.study.studies import count_finished
from search.study.trial_budget import OVER_BUDGET

DRIVER_APP = "load-bench-driver"  # application_name of the benchmark's own connections (not counted)
SAMPLES_LOST = " samples lost"  # ConnectionWatch.stop()'s key beside the databases (no database's name)


class ConnectionWatch(threading.Thread):
    """Samples pg_stat_activity every `every` seconds: the peak number of client connections per database,
    the benchmark's own excluded."""

    def __init__(self, dsn: str, every: float = 0.25, name: str = DRIVER_APP):
        super().__init__(daemon=True)
        self.dsn, self.every, self.name = dsn, every, name  # name: its own connection's application_name
        self.peak: Counter = Counter()
        self.peak_total = 0
        self.dropped = 0  # samples lost to a dropped connection
        self._halt = threading.Event()

    def run(self) -> None:
        import psycopg2

        db = None
        try:
            while not self._halt.is_set():
                try:
                    db = db or self._connect()
                    self._sample(db)
                except (psycopg2.OperationalError, psycopg2.InterfaceError):
                    # the server dropped this connection (a restart, another client's pg_terminate_backend):
                    # the samples go on over a new one, and the gap is counted instead of ending the watch
                    self.dropped += 1
                    if db is not None:
                        db.close()
                    db = None
                self._halt.wait(self.every)
        finally:
            if db is not None:
                db.close()

    def _connect(self) -> Any:
        import psycopg2

        db = psycopg2.connect(self.dsn, application_name=self.name, connect_timeout=3)
        db.autocommit = True
        return db

    def _sample(self, db: Any) -> None:
        with db.cursor() as cursor:
            cursor.execute(
                "SELECT datname, count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                " AND application_name NOT IN (%s, %s) GROUP BY datname",
                (DRIVER_APP, self.name),
            )
            now = dict(cursor.fetchall())
        for name, count in now.items():
            self.peak[name] = max(self.peak[name], count)
        self.peak_total = max(self.peak_total, sum(now.values()))

    def stop(self) -> dict[str, Any]:
        self._halt.set()
        self.join(timeout=10)
        return {"total": self.peak_total, **dict(self.peak), SAMPLES_LOST: self.dropped}


def account(study: optuna.Study, budget: int, runs: list[Any], labels: list[str]) -> dict[str, Any]:
    """Every trial and MLflow run of a finished study, and whether they add up; `labels`: the spec's
    enqueued configs, each of which must have run exactly once."""
    trials = study.get_trials(deepcopy=False)
    numbers = Counter(t.number for t in trials)
    rerun = rerun_trials(trials)
    ran: Counter = Counter()
    for t in trials:
        if "baseline" in t.user_attrs and t.state.is_finished() and t.number not in rerun:
            ran[t.user_attrs["baseline"]] += 1
    run_numbers = Counter(
        int(r.data.tags["optuna.trial_number"]) for r in runs if r.data.tags.get("search.role") == "trial"
    )
    counted = count_finished(study)
    # a trial that started past a full budget ends at once, with no run (search.study.trial_budget)
    over = {t.number for t in trials if t.user_attrs.get("reason") == OVER_BUDGET}
    started = {t.number for t in trials if t.state != TrialState.WAITING} - over
    return {
        "states": dict(Counter(t.state.name for t in trials)),
        "fail_reasons": dict(Counter(_fail_reason(t) for t in trials if t.state == TrialState.FAIL)),
        "rerun_trials": len(rerun),
        "over_budget_trials": len(over),
        "counted_against_budget": counted,
        "budget_met_exactly": counted == budget,
        "duplicate_trial_numbers": sum(n - 1 for n in numbers.values() if n > 1),
        "numbers_contiguous": sorted(numbers) == list(range(len(numbers))),
        "enqueued_run_not_once": {label: ran[label] for label in sorted({*labels, *ran}) if ran[label] != 1},
        "running_at_end": sum(t.state == TrialState.RUNNING for t in trials),
        "waiting_at_end": sum(t.state == TrialState.WAITING for t in trials),
        "mlflow_runs": sum(run_numbers.values()),
        "mlflow_runs_without_trial": sum(n for number, n in run_numbers.items() if number not in started),
        "mlflow_runs_twice": sum(n - 1 for n in run_numbers.values() if n > 1),
        "trials_without_run": sorted(number for number in started if number not in run_numbers),
        "mlflow_runs_still_running": sum(
            r.info.status == "RUNNING" for r in runs if r.data.tags.get("search.role") == "trial"
        ),
    }


def _fail_reason(trial: optuna.trial.FrozenTrial) -> str:
    reason = trial.user_attrs.get("reason")
    if reason == "exception" and "fails on purpose" in str(trial.user_attrs.get("traceback", "")):
        return "fails_on_purpose"
    if reason:
        return str(reason)
    return "unrecorded"


def overhead(study: optuna.Study, epoch_seconds: float) -> dict[str, Any]:
    """Per worker process, the time from its first trial's start to its last trial's end less what its
    trainer slept (epochs reported x epoch_seconds): sampling, pruning checks, storage and MLflow writes,
    recovery sweeps and the waits for a contended database, per trial."""
    by_worker: dict[Any, list[optuna.trial.FrozenTrial]] = defaultdict(list)
    for t in study.get_trials(deepcopy=False):
        worker = worker_of(t)
        if worker and t.datetime_start and t.datetime_complete:
            by_worker[worker.get("pid")].append(t)
    busy = slept = 0.0
    count = 0
    for trials in by_worker.values():
        start = min(t.datetime_start for t in trials)
        end = max(t.datetime_complete for t in trials)
        busy += (end - start).total_seconds()
        slept += sum(len(t.intermediate_values) for t in trials) * epoch_seconds
        count += len(trials)
    return {
        "workers_seen": len(by_worker),
        "trials_timed": count,
        "overhead_s_per_trial": round((busy - slept) / count, 3) if count else None,
        "slept_s_per_trial": round(slept / count, 3) if count else None,
    }


def wait_for(condition, timeout: float, every: float = 0.2) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(every)
    return condition()
