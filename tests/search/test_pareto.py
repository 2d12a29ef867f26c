"""A multi-objective study's front is its own (search/spec/pareto.py), and the constraints that decide
who may be on it keep a retried trial's own values (search/spec/objectives.set_constraint);
trials written by Optuna directly.

python -m pytest tests/search/test_pareto.py -q
"""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from search.spec.objectives import set_constraint
from search.spec.pareto import pareto_trials
from search.study.studies import summary
from search.study.warm_start import FROM_ATTR

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _trial(values, *, foreign=False, constraint=None, state=TrialState.COMPLETE):
    attrs = {FROM_ATTR: "earlier#3"} if foreign else {"config": {"optim": {"lr": values[0]}}}
    system = {} if constraint is None else {"constraints:decode": constraint}
    return create_trial(
        state=state,
        values=values if state == TrialState.COMPLETE else None,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0.0, 1.0)},
        user_attrs=attrs,
        system_attrs=system,
    )


def test_the_front_ignores_foreign_and_infeasible_trials_and_keeps_what_only_they_dominate():
    study = optuna.create_study(directions=["maximize", "minimize"])  # accuracy up, ms per formula down
    study.add_trials(
        [
            _trial([60.0, 20.0]),  # 0: front
            _trial([50.0, 12.0]),  # 1: front among own trials; the foreign trial 4 dominates it
            _trial([55.0, 25.0]),  # 2: dominated by 0
            _trial([70.0, 5.0], constraint=3.0),  # 3: would dominate everything but breaks a constraint
            _trial([52.0, 11.0], foreign=True),  # 4: a warm start's record
            _trial([60.0, 20.0]),  # 5: ties 0: neither dominates the other
            _trial([90.0, 1.0], state=TrialState.PRUNED),  # 6: not complete
        ]
    )
    assert 1 not in {t.number for t in study.best_trials}  # what Optuna's own front does
    front = pareto_trials(study)
    assert [t.number for t in front] == [0, 5, 1]  # most accurate first, then by number
    assert summary(study)["pareto"] == [0, 1, 5]


def test_a_retried_trial_takes_its_own_constraint_values_without_optunas_warning(recwarn):
    study = optuna.create_study()
    # what RetryHeartbeatStaleTrialCallback enqueues: the dead trial's system attrs, constraints included
    retry = _trial([0.0], state=TrialState.WAITING, constraint=2.0)
    retry.system_attrs["constraints:spec"] = 0.0
    study.add_trial(retry)
    trial = study.ask()
    set_constraint(trial, "spec", 0.0)  # the same config check: nothing to change
    set_constraint(trial, "decode", 0.5)  # decoding timed again: the new value counts
    set_constraint(trial, "fresh", 1.0)
    study.tell(trial, 1.0)
    assert study.trials[0].constraints == {"spec": 0.0, "decode": 0.5, "fresh": 1.0}
    assert not [w for w in recwarn if "already set" in str(w.message)]
