"""The spec's `pruner:` as an Optuna pruner, with the first trials of a study protected from it.

Asynchronous successive halving (Optuna's Hyperband and successive-halving pruners) promotes a trial past
a rung only if it is in the top 1/reduction_factor of the trials that reached that rung so far, and with
fewer than reduction_factor of them that means beating every one. So a study's second and third trials
must beat the first at the first rung to live. In two `make bench-search` runs on the CPU profile,
Hyperband cut the second trial, which ended 2 and 9 points above the first (README.md's git history), and
TPE then searched around the first. `pruner.n_startup_trials` lets that many trials complete before any trial
is cut, so the sampler's model starts from full-fidelity values. The halving still judges every report
of a protected trial (Hyperband records each trial's rung values as it goes), so later trials compete
with the protected ones.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from search.spec.parse import StudySpec

# Optuna's own defaults for the pruners that already take n_startup_trials; none for the halving ones
DEFAULT_STARTUP = {"median": 5, "percentile": 5}


class _StartupGuard:
    """Mixed into a halving pruner: its verdict, except that no trial is cut until `n_startup_trials`
    trials have completed. A subclass rather than a wrapper, because Optuna's samplers look for a
    HyperbandPruner on the study to model each bracket's trials apart."""

    def __init__(self, *args: object, n_startup_trials: int = 0) -> None:
        super().__init__(*args)  # type: ignore[call-arg]
        self.n_startup_trials = n_startup_trials

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if not super().prune(study, trial):  # type: ignore[misc]  # called first: it records rung values
            return False
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return len(completed) >= self.n_startup_trials


class GuardedHyperband(_StartupGuard, optuna.pruners.HyperbandPruner):
    pass


class GuardedHalving(_StartupGuard, optuna.pruners.SuccessiveHalvingPruner):
    pass


def startup_trials(spec: StudySpec) -> int:
    p = spec.pruner
    return p.n_startup_trials if p.n_startup_trials is not None else DEFAULT_STARTUP.get(p.name, 0)


def create_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if spec.objective.multi or p.name == "none":  # Optuna cannot prune a multi-objective trial
        return optuna.pruners.NopPruner()
    startup = startup_trials(spec)
    if p.name == "median":
        return optuna.pruners.MedianPruner(startup, p.n_warmup_steps)
    if p.name == "percentile":  # keeping the top 75 % cuts only the runs that do not learn
        return optuna.pruners.PercentilePruner(p.percentile, startup, p.n_warmup_steps)
    if p.name == "hyperband":
        max_resource = spec.budget.max_epochs or "auto"
        return GuardedHyperband(p.min_resource, max_resource, p.reduction_factor, n_startup_trials=startup)
    return GuardedHalving(p.min_resource, p.reduction_factor, n_startup_trials=startup)
