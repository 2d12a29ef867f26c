"""Workers sharing a study stop at its trial budget exactly (search.study.trial_budget), and a trial whose
worker died before it opened its MLflow run still gets one (search.tracking.close_orphaned_runs)."""

from __future__ import annotations

import socket

import optuna
import pytest
from optuna.trial import TrialState

import search.study.trial_budget as trial_budget
from search.cli import main
from search.spec.parse import load_spec
from search.study.recovery import WORKER_ATTR, recover_stale_trials
from search.study.storage import create_storage
from search.study.studies import count_finished, prepare_study
from search.tracking import PARENT_ATTR, get_client, tracker_or_none

DIST = {"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}


@pytest.fixture
def study():
    study = optuna.create_study(direction="maximize")
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(params={"optim.lr": 1e-3}, distributions=DIST, value=1.0))
    return study


@pytest.fixture(autouse=True)
def no_wait(monkeypatch):
    monkeypatch.setattr(trial_budget, "RECHECK_S", 0.0)


def test_of_two_trials_racing_for_the_last_place_only_the_earlier_one_trains(study):
    first, second = study.ask(), study.ask()
    assert trial_budget.within_budget(study, first, budget=3)
    assert not trial_budget.within_budget(study, second, budget=3)
    assert trial_budget.within_budget(study, second, budget=4)


def test_a_trial_of_a_dead_worker_holds_no_place(study):
    """Neither when a trial starts nor when a worker decides whether to stop after one."""
    dead = study.ask()
    dead.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": 2**22 + 7})
    assert not trial_budget.budget_taken(study, budget=3)
    late = study.ask()
    assert trial_budget.within_budget(study, late, budget=3)
    assert trial_budget.budget_taken(study, budget=3)  # the live one fills the last place


def test_over_budget_trials_and_reruns_do_not_count(study):
    over = study.ask()
    over.set_user_attr("reason", trial_budget.OVER_BUDGET)
    study.tell(over, state=TrialState.PRUNED)
    died = study.ask()
    died.set_user_attr("reason", "worker_died")
    study.tell(died, state=TrialState.FAIL)
    assert len(trial_budget.counted(study.get_trials())) == 2


def test_a_worker_that_starts_past_a_full_budget_trains_nothing_and_counts_nothing(fake_study, fake_training):
    """Budget 8: 7 finished and another worker already runs the eighth (the baseline). This worker's first
    trial starts anyway (its budget check runs after a trial), finds no place, ends PRUNED over_budget
    without training, and the study ends at exactly 8."""
    prepare_study(load_spec(fake_study), None)
    other = optuna.load_study(study_name=fake_study, storage=create_storage(fake_study))
    for _ in range(7):
        other.add_trial(optuna.trial.create_trial(params={"optim.lr": 1e-3}, distributions=DIST, value=1.0))
    eighth = other.ask()  # pops the enqueued baseline
    fake = fake_training()
    assert main(["worker", fake_study], train_fn=fake) == 0
    assert fake.calls == [], "a full budget starts no training"
    mine = [t for t in other.get_trials() if t.user_attrs.get("reason") == trial_budget.OVER_BUDGET]
    assert len(mine) == 1 and mine[0].state == TrialState.PRUNED and "optim.lr" not in mine[0].params
    other.tell(eighth, 1.0)
    assert count_finished(other) == 8


def test_a_trial_killed_before_its_mlflow_run_opened_gets_a_failed_run(fake_study, fake_training):
    assert main(["study", fake_study, "--trials", "1"], train_fn=fake_training()) == 0
    study = optuna.load_study(study_name=fake_study, storage=create_storage(fake_study))
    lost = study.ask()
    lost.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": 2**22 + 7})
    tracker = tracker_or_none(fake_study, study.user_attrs.get(PARENT_ATTR))
    assert recover_stale_trials(study, tracker) == [lost.number]
    client = get_client()
    runs = client.search_runs([client.get_experiment_by_name(fake_study).experiment_id])
    mine = [r for r in runs if r.info.run_name == f"trial-{lost.number}"]
    assert len(mine) == 1
    assert mine[0].info.status == "FAILED" and mine[0].data.tags["search.reason"] == "worker_died"
