"""`budget.total_epochs`: a study trains exactly its epoch budget, never more, with or without a pruner.

    python -m pytest tests/search/test_epoch_budget.py -q
"""

from __future__ import annotations

import pytest
import yaml
from optuna.trial import TrialState

from core.paths import studies_dir
from search.cli import main
from search.spec.parse import SpecError, load_spec
from search.study import studies
from search.study.epoch_budget import BUDGET_REASON, epochs_spent


def _set_budget(name: str, pruner: str | None = None, **budget) -> None:
    path = studies_dir() / f"{name}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["budget"].update(budget)
    if pruner == "none":
        spec["pruner"] = {"name": "none"}
    spec.pop("enqueue")  # sampled trials only: the baseline's lr would make every run alike
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


@pytest.mark.parametrize("pruner", ["none", "successive_halving"])
def test_the_trial_that_would_cross_the_budget_is_cut_at_it(fake_study, fake_training, pruner):
    fake = fake_training()
    _set_budget(fake_study, pruner, n_trials=20, max_epochs=4, total_epochs=10)
    assert main(["study", fake_study], train_fn=fake) == 0
    study = studies.load_existing(fake_study, None)
    assert epochs_spent(study) == 10  # not 12: the third 4-epoch trial stops after 2
    last = study.trials[-1]
    assert last.state == TrialState.PRUNED and last.user_attrs["reason"] == BUDGET_REASON
    assert sum(len(t.intermediate_values) for t in study.trials[:-1]) + len(last.intermediate_values) == 10
    assert all(t.user_attrs.get("reason") != BUDGET_REASON for t in study.trials[:-1])
    # a rerun of the spent study starts nothing
    assert main(["study", fake_study], train_fn=fake) == 0
    assert len(studies.load_existing(fake_study, None).trials) == len(study.trials)


def test_a_trial_that_ends_exactly_at_the_budget_completes(fake_study, fake_training):
    fake = fake_training()
    _set_budget(fake_study, "none", n_trials=20, max_epochs=4, total_epochs=8)
    assert main(["study", fake_study], train_fn=fake) == 0
    study = studies.load_existing(fake_study, None)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert epochs_spent(study) == 8


def test_a_budget_below_one_epoch_is_refused(fake_study):
    _set_budget(fake_study, total_epochs=0)
    with pytest.raises(SpecError, match="budget.total_epochs"):
        load_spec(fake_study)


def test_a_trial_counts_its_last_validated_epoch_whatever_reported_it():
    import optuna

    from search.spec.objectives import EPOCH_VALUES_ATTR
    from search.study.epoch_budget import trial_epochs

    every_other = optuna.trial.create_trial(state=TrialState.PRUNED, intermediate_values={2: 10.0, 4: 20.0})
    curve = {"1": 5.0, "2": 6.0, "3": 7.0}  # a multi-objective trial reports nothing; its curve is an attr
    multi = optuna.trial.create_trial(state=TrialState.COMPLETE, values=[1.0, 2.0],
                                      user_attrs={EPOCH_VALUES_ATTR: curve})  # fmt: skip
    assert trial_epochs(every_other) == 4 and trial_epochs(multi) == 3
