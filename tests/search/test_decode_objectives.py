"""Decoding speed as a constraint or as a second objective, with the fake training loop (its decode speed
grows with the model's width: tests/search/conftest.py fake_decode_ms).

python -m pytest tests/search/test_decode_objectives.py -q
"""

from __future__ import annotations

import pytest
import yaml
from optuna.trial import TrialState

from core.typed_config import to_dict
from search.cli import main
from search.spec.constraints import violation
from search.spec.parse import SpecError, parse_spec
from search.study.studies import load_existing
from training.config import load_train_config

from .conftest import FAKE_SPEC, fake_decode_ms


def _edit_spec(home, name, **changes):
    path = home / "studies" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _ms(trial) -> float:
    return fake_decode_ms(load_train_config(trial.user_attrs["config"]))


def test_a_decode_constraint_marks_slow_trials_infeasible_and_best_and_export_skip_them(
    fake_study, fake_training, isolated_home
):
    fake = fake_training()
    constraints = yaml.safe_load(FAKE_SPEC)["constraints"] + ["decode.ms_per_formula <= 12"]
    _edit_spec(isolated_home, fake_study, constraints=constraints, pruner={"name": "none"})
    assert main(["study", fake_study, "--trials", "8"], train_fn=fake) == 0
    study = load_existing(fake_study, None)
    baseline = study.trials[0]  # d_model 64 at the fake's best lr: the top score, but 16 ms a formula
    assert baseline.state == TrialState.COMPLETE and _ms(baseline) == 16
    assert baseline.constraints["decode"] == pytest.approx((16 - 12) / 12)  # graded: how far over
    assert baseline.user_attrs["constraint_broken"] == ["decode.ms_per_formula <= 12"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    for trial in complete:
        assert (trial.constraints["decode"] > 0) == (_ms(trial) > 12), trial.number
    assert any(t.constraints["decode"] == 0 for t in complete), "some sampled trial is fast enough"
    assert max(complete, key=lambda t: t.value).number == baseline.number
    assert study.best_trial.number != baseline.number and _ms(study.best_trial) <= 12
    assert main(["export", fake_study, "--top", "3"], train_fn=fake) == 0
    exports = isolated_home / "studies" / "exports"
    for path in exports.glob(f"{fake_study}.*.yaml"):
        assert fake_decode_ms(load_train_config(path)) <= 12, path.name
    assert main(["report", fake_study], train_fn=fake) == 0
    report = (isolated_home / "studies" / "reports" / f"{fake_study}.html").read_text()
    assert f"#{baseline.number}: decode.ms_per_formula &lt;= 12" in report


def test_a_multi_objective_study_trains_every_trial_fully_and_exports_its_pareto_front(
    fake_study, fake_training, isolated_home, capsys
):
    fake = fake_training()
    metrics = ["val/avg_score", "decode/ms_per_formula"]
    objective = {"metrics": metrics, "directions": ["maximize", "minimize"]}
    _edit_spec(isolated_home, fake_study, objective=objective)
    assert main(["study", fake_study, "--trials", "8"], train_fn=fake) == 0
    assert "Optuna cannot prune multi-objective trials" in capsys.readouterr().out
    study = load_existing(fake_study, None)
    assert study.metric_names == objective["metrics"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert all(t.user_attrs["reason"] == "constraint" for t in pruned), "only impossible points"
    for trial in complete:
        assert trial.intermediate_values == {}  # nothing reported: nothing to prune on
        assert trial.values[1] == trial.user_attrs["decode_ms_per_formula"] == _ms(trial)
    front = study.best_trials
    assert 1 <= len(front) < len(complete)
    for t in front:  # nobody beats a front trial on both objectives
        assert not any(o.values[0] >= t.values[0] and o.values[1] < t.values[1] for o in complete)

    exports = isolated_home / "studies" / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    (exports / f"{fake_study}.pareto-99.yaml").write_text("stale")
    assert main(["export", fake_study, "--pareto"], train_fn=fake) == 0
    written = sorted(exports.glob(f"{fake_study}.pareto-*.yaml"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    assert len(written) == len(front)
    ranked = sorted(front, key=lambda t: -t.values[0])
    for trial, path in zip(ranked, written, strict=True):
        text = path.read_text()
        assert f"# trial: {trial.number}\n" in text and "decode/ms_per_formula=" in text
        assert to_dict(load_train_config(path)) == trial.user_attrs["config"]
    assert main(["report", fake_study], train_fn=fake) == 0
    report = (isolated_home / "studies" / "reports" / f"{fake_study}.html").read_text()
    assert f"Pareto front ({len(front)} trials" in report


def test_export_pareto_of_a_single_objective_study_says_what_to_run(fake_study, fake_training, capsys):
    fake = fake_training()
    assert main(["study", fake_study, "--trials", "2"], train_fn=fake) == 0
    assert main(["export", fake_study, "--pareto"], train_fn=fake) == 1
    assert f"make export NAME={fake_study}" in capsys.readouterr().err


def _spec(**changes):
    return parse_spec({**yaml.safe_load(FAKE_SPEC), **changes}, default_name="t")


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        ({"metrics": ["val/avg_score"], "directions": ["maximize"]}, "one metric is spelled"),
        ({"metrics": ["val/avg_score", "decode/ms"], "directions": ["maximize", "minimize"]}, "decode/ms"),
        ({"metrics": ["decode/ms_per_formula", "val/avg_score"], "directions": ["minimize", "maximize"]},
         "picks best.pt"),
        ({"metrics": ["val/avg_score", "val/loss"], "directions": ["maximize"]}, "same length"),
        ({"metrics": ["val/avg_score", "val/loss"], "directions": ["maximize", "down"]}, "'down'"),
        ({"metric": "val/loss", "metrics": ["val/avg_score", "val/loss"], "directions": ["max", "min"]},
         "cannot be combined"),
        ({"metric": "decode/ms_per_formula"}, "objective.metric"),
    ],
)  # fmt: skip
def test_objective_spec_errors_name_the_problem(objective, message):
    with pytest.raises(SpecError, match=message):
        _spec(objective=objective)


def test_decode_constraints_need_a_measured_path_and_the_measurement_on():
    fast = "decode.formulas_per_s >= 100"
    assert _spec(constraints=[fast]).constraints == (fast,)
    with pytest.raises(SpecError, match="decode.ms_per_image.*is not measured"):
        _spec(constraints=["decode.ms_per_image <= 5"])
    off = {"decode_speed_formulas": 0, "epochs": 4, "batch_size": 8}
    base = {"model": {"kind": "transformer"}, "trainer": off}
    with pytest.raises(SpecError, match="decode_speed_formulas is 0"):
        _spec(base=base, constraints=["decode.ms_per_formula <= 5"])
    with pytest.raises(SpecError, match="decode_speed_formulas is 0"):
        _spec(base=base, objective={"metrics": ["val/avg_score", "decode/formulas_per_s"],
                                    "directions": ["maximize", "maximize"]})  # fmt: skip


def test_violation_grows_with_the_distance_from_feasibility():
    assert violation("decode.ms_per_formula <= 20", {"decode.ms_per_formula": 15.0}) == 0
    assert violation("decode.ms_per_formula <= 20", {"decode.ms_per_formula": 30.0}) == pytest.approx(0.5)
    assert violation("decode.ms_per_formula <= 20", {"decode.ms_per_formula": 60.0}) == pytest.approx(2.0)
    assert violation("decode.formulas_per_s >= 100", {"decode.formulas_per_s": 50.0}) == pytest.approx(0.5)
    assert violation("not decode.formulas_per_s > 1", {"decode.formulas_per_s": 5.0}) == 1.0
