"""`budget.total_epochs`: a study's budget in training epochs, held exactly.

A budget in trials is unfair to a pruner (its cut trials are cheap) and a budget that is checked only when
a trial ends is overshot by the trial that crosses it: an arm that has used 58 of 64 epochs starts one
more 8-epoch trial and ends at 66. Here the study stops starting trials once the epochs trained reach the
budget, and a trial that would train past it is cut at the budget, pruned with reason `budget`: its
partial curve counts as what it is, never as a complete result.

A trial's epochs are its last validated epoch (its intermediate values, or a multi-objective trial's
`epoch_values`), over every trial that ran, RUNNING ones included, except a trial cut short by a kill and
run again, which is counted once, as its rerun (search.study.recovery). The cut happens in the trial's report
callback (search.trial), not in the pruner: Optuna's TPE treats a study whose pruner is a
HyperbandPruner specially (one bracket's trials per model), which a wrapping pruner would hide. Several
workers may overshoot by the epochs the others are training when the budget is reached; one worker holds
it exactly. Optuna cannot prune a multi-objective trial, so there the budget holds at trial boundaries.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.spec.objectives import EPOCH_VALUES_ATTR
from search.study.recovery import rerun_trials

SPENT = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
BUDGET_REASON = "budget"


def trial_epochs(trial: FrozenTrial) -> int:
    """The last epoch a trial validated (epochs between validations count once the next one reports)."""
    reported = trial.intermediate_values or trial.user_attrs.get(EPOCH_VALUES_ATTR) or {}
    return max((int(epoch) for epoch in reported), default=0)


def epochs_spent(study: optuna.Study, exclude: int | None = None) -> int:
    """Epochs the study's trials have trained; `exclude` leaves one trial (the caller's own) out."""
    every = study.get_trials(deepcopy=False)
    rerun = rerun_trials(every)
    return sum(
        trial_epochs(t) for t in every if t.state in SPENT and t.number not in rerun and t.number != exclude
    )


def stop_at_epoch_budget(total_epochs: int):
    """A study callback: no new trial once the epochs spent reach `total_epochs`."""

    def stop(study: optuna.Study, trial: FrozenTrial) -> None:
        if epochs_spent(study) >= total_epochs:
            study.stop()

    return stop
