"""The load benchmark's accounting (benchmarks/load_accounting.py) finds what it is there to find."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from benchmarks.load_accounting import SAMPLES_LOST, ConnectionWatch, account, overhead
from search.study.recovery import WORKER_ATTR

DIST = {"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}


def _run(number: int, status: str = "FINISHED"):
    tags = {"optuna.trial_number": str(number), "search.role": "trial"}
    return SimpleNamespace(data=SimpleNamespace(tags=tags), info=SimpleNamespace(status=status))


def _study(labels: list[str | None]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for label in labels:
        attrs = {"baseline": label} if label else {}
        study.add_trial(
            optuna.trial.create_trial(
                params={"optim.lr": 1e-3}, distributions=DIST, value=1.0, user_attrs=attrs
            )
        )
    return study


def test_a_clean_study_adds_up():
    study = _study(["a", None, None])
    result = account(study, 3, [_run(n) for n in range(3)], ["a"])
    assert result["budget_met_exactly"] and result["enqueued_run_not_once"] == {}
    assert result["trials_without_run"] == [] and result["mlflow_runs_without_trial"] == 0
    assert result["running_at_end"] == 0 and result["duplicate_trial_numbers"] == 0


def test_each_fault_is_reported():
    study = _study(["a", "a", None])  # baseline a ran twice, baseline b never
    study.ask()  # left RUNNING
    runs = [_run(0), _run(1), _run(1), _run(9, "RUNNING")]  # trial 2 has none, trial 1 two, 9 is no trial
    result = account(study, 3, runs, ["a", "b"])
    assert result["counted_against_budget"] == 3
    assert result["enqueued_run_not_once"] == {"a": 2, "b": 0}
    assert result["running_at_end"] == 1
    assert result["trials_without_run"] == [2, 3]
    assert result["mlflow_runs_twice"] == 1 and result["mlflow_runs_without_trial"] == 1
    assert result["mlflow_runs_still_running"] == 1
    assert account(study, 4, runs, ["a"])["budget_met_exactly"] is False


def test_overhead_is_the_busy_time_less_the_sleep_per_trial():
    study = optuna.create_study(direction="maximize")
    start = datetime(2026, 1, 1)
    for i in range(3):  # one worker: trials of 2 reported epochs, back to back, 3 s apart
        trial = optuna.trial.create_trial(
            params={"optim.lr": 1e-3}, distributions=DIST, value=1.0,
            intermediate_values={1: 0.5, 2: 1.0}, user_attrs={WORKER_ATTR: {"host": "h", "pid": 7}},
        )  # fmt: skip
        trial.datetime_start = start + timedelta(seconds=3 * i)
        trial.datetime_complete = trial.datetime_start + timedelta(seconds=2.5)
        study.add_trial(trial)
    result = overhead(study, epoch_seconds=1.0)  # busy 8.5 s, slept 6 s, 3 trials
    assert result["workers_seen"] == 1 and result["trials_timed"] == 3
    assert abs(result["overhead_s_per_trial"] - 2.5 / 3) < 1e-3
    assert study.get_trials(states=(TrialState.COMPLETE,))


@pytest.mark.postgres
def test_the_connection_watch_outlives_its_connection_being_dropped():
    """Another client terminating the watch's backend (CI's storage-fault test once did, mid-benchmark)
    costs a sample, counted, and the watch goes on over a new connection."""
    import psycopg2

    from tests.search.test_workers import _postgres_url

    dsn = _postgres_url()
    name = f"watch-test-{uuid.uuid4().hex[:8]}"  # not DRIVER_APP: a load run may be watching beside this test
    watch = ConnectionWatch(dsn, every=0.05, name=name)
    watch.start()
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    try:
        deadline = time.monotonic() + 10
        while not watch.dropped and time.monotonic() < deadline:
            with admin.cursor() as cursor:  # the watch's own backend, by its application_name
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    (name,),
                )
            time.sleep(0.1)
        assert watch.dropped, "the watch's connection was never dropped"
        back = 0
        while not back and time.monotonic() < deadline:  # it connected again, and is still sampling
            time.sleep(0.1)
            with admin.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,))
                back = cursor.fetchone()[0]
        assert back == 1 and watch.is_alive()
        peaks = watch.stop()
    finally:
        admin.close()
    assert not watch.is_alive() and peaks[SAMPLES_LOST] == watch.dropped >= 1
