"""Workers that share a study stop at its trial budget exactly, however many of them start at once.

    counted(trials)                        # the finished trials that count against the budget
    budget_taken(study, budget)            # after a trial: stop this worker, the budget is spoken for
    within_budget(study, trial, budget)    # False: this just-started trial is one too many; it trains nothing

A worker checks the budget after each trial (finished + running < budget), but N workers that check at
the same moment all start one more: the load benchmark saw 25 trials for a budget of 24 with 4 workers.
So each trial, once it is RUNNING, takes its place in one order every worker computes the same way (its
start time, then its number) and trains only when the finished trials plus the running ones before it
leave room. The one that would be one too many ends PRUNED with reason `over_budget`, before it samples,
trains or opens an MLflow run, and does not count. A trial that started a moment earlier may not yet be
visible when the later one looks (its start time is taken before its write commits), so near the end
the check looks twice, RECHECK_S apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.study.recovery import rerun_trials, worker_is_dead
from search.study.warm_start import is_foreign

OVER_BUDGET = "over_budget"  # user attr `reason` of a trial that started past a full budget
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
RECHECK_S = 0.5  # far longer than a start time takes to commit on a live database


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Finished trials against the budget: not one that runs again (cut by Ctrl-C, lost with its worker),
    not one that started past a full budget, not one copied from another study."""
    rerun = rerun_trials(trials)
    return [
        t
        for t in trials
        if t.state in FINISHED
        and t.number not in rerun
        and t.user_attrs.get("reason") != OVER_BUDGET
        and not is_foreign(t)
    ]


def budget_taken(study: optuna.Study, budget: int) -> bool:
    """A worker's check after each trial: the finished trials and the ones live workers are running fill
    the budget (a dead worker's trial holds no place: it will be failed and run again)."""
    trials = study.get_trials(deepcopy=False)
    return len(counted(trials)) + len(_live_running(trials)) >= budget


def within_budget(study: optuna.Study, trial: optuna.Trial, budget: int) -> bool:
    """Whether the running `trial` has a place in the budget; looks again after RECHECK_S when few places
    are left (a trial not visible yet can only be one a live worker is starting)."""
    room = _room(study.get_trials(deepcopy=False), trial.number, budget)
    if room is None or room > 2 * _running_count(study) + 2:
        return True
    time.sleep(RECHECK_S)
    room = _room(study.get_trials(deepcopy=False), trial.number, budget)
    return room is None or room > 0


def _room(trials: list[FrozenTrial], number: int, budget: int) -> int | None:
    """The places left once this trial and every live trial that started before it are counted."""
    own = next((t for t in trials if t.number == number), None)
    if own is None or own.datetime_start is None:
        return None  # not readable yet: let it train rather than lose it
    key = (own.datetime_start, own.number)
    before = sum(
        1
        for t in _live_running(trials)
        if t.number != number and (t.datetime_start or own.datetime_start, t.number) < key
    )
    return budget - len(counted(trials)) - before


def _live_running(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    # a dead worker's trial will be failed and run again: it holds no place
    return [t for t in trials if t.state == TrialState.RUNNING and not worker_is_dead(t)]


def _running_count(study: optuna.Study) -> int:
    return len(_live_running(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))))
