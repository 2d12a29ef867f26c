"""`budget.total_epochs`: a study's budget in training epochs, held exactly.

A budget in trials is unfair to a pruner (its cut trials are cheap) and a budget that is checked only when
a trial ends is overshot by the trial that crosses it: an arm that has used 58 of 64 epochs starts one
more 8-epoch trial and ends at 66. Here the study stops starting trials once the epochs trained reach the
budget, and a trial that would train past it is cut at the budget, pruned with reason `budget`: its
partial curve counts as what it is, never as a complete result.

Epochs count one per reported validation (the trials' intermediate values) over every trial that ran,
RUNNING ones included (other workers' epochs are spent too), except a trial cut short by a kill and run
again, which is counted once, as its rerun (search.recovery). A multi-objective study reports nothing
mid-trial (Optuna cannot prune it), so there the budget holds only at trial boundaries.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.recovery import rerun_trials

SPENT = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
BUDGET_REASON = "budget"


def epochs_spent(study: optuna.Study) -> int:
    every = study.get_trials(deepcopy=False)
    rerun = rerun_trials(every)
    return sum(len(t.intermediate_values) for t in every if t.state in SPENT and t.number not in rerun)


class EpochBudgetPruner(optuna.pruners.BasePruner):
    """Wraps the study's pruner; also cuts a trial once the study's epochs reach `total_epochs`, unless
    that trial has just trained its last epoch (`max_epochs`) and so completes within the budget."""

    def __init__(self, inner: optuna.pruners.BasePruner, total_epochs: int, max_epochs: int | None):
        self.inner = inner
        self.total_epochs = total_epochs
        self.max_epochs = max_epochs

    def over_budget(self, study: optuna.Study, reported: int) -> bool:
        """Whether a trial that has reported `reported` epochs is to stop for the budget."""
        finished = self.max_epochs is not None and reported >= self.max_epochs
        return not finished and epochs_spent(study) >= self.total_epochs

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self.over_budget(study, len(trial.intermediate_values)) or self.inner.prune(study, trial)


def cut_by_budget(study: optuna.Study, reported: int) -> bool:
    """Whether `study`'s pruner stops a trial with `reported` epochs for the budget (the pruning reason)."""
    pruner = study.pruner
    return isinstance(pruner, EpochBudgetPruner) and pruner.over_budget(study, reported)


def stop_at_epoch_budget(total_epochs: int):
    """A study callback: no new trial once the epochs spent reach `total_epochs`."""

    def stop(study: optuna.Study, trial: FrozenTrial) -> None:
        if epochs_spent(study) >= total_epochs:
            study.stop()

    return stop
