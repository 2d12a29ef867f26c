"""Export and report on a study run with the fake training loop (fast).

python -m pytest tests/search/test_export_report.py -q
"""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from core.typed_config import to_dict
from search.cli import main
from search.study.studies import load_existing
from training.config import load_train_config


@pytest.fixture
def finished_fake_study(fake_study, fake_training):
    fake = fake_training()
    assert main(["study", fake_study, "--trials", "6"], train_fn=fake) == 0
    return load_existing(fake_study, None)


def test_export_writes_the_best_trials_config_with_provenance(
    fake_study, fake_training, isolated_home, capsys
):
    fake = fake_training()
    spec = isolated_home / "studies" / f"{fake_study}.yaml"  # no pruner: several complete trials
    spec.write_text(spec.read_text().replace("name: successive_halving", "name: none"))
    assert main(["study", fake_study, "--trials", "4"], train_fn=fake) == 0
    study = load_existing(fake_study, None)
    capsys.readouterr()
    assert main(["export", study.study_name, "--top", "2"], train_fn=fake) == 0
    best_path = isolated_home / "studies" / "exports" / f"{study.study_name}.best.yaml"
    second_path = isolated_home / "studies" / "exports" / f"{study.study_name}.top2.yaml"
    text = best_path.read_text()
    assert f"# study: {study.study_name}\n" in text and f"# trial: {study.best_trial.number}\n" in text
    assert "# dataset_hash: fakehash\n" in text and "# date: " in text
    assert f"# score: {study.best_value:.4f}" in text
    assert to_dict(load_train_config(best_path)) == study.best_trial.user_attrs["config"]
    ranked = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    assert len(ranked) >= 2, "the fixture study must finish two trials for a rank-2 export"
    assert f"# trial: {ranked[1].number}\n" in second_path.read_text()
    assert str(best_path) in capsys.readouterr().out


def test_export_without_a_complete_trial_says_what_to_run(fake_study, fake_training, capsys):
    fake = fake_training(lambda config: "boom")
    # every trial failed: not a success
    assert main(["study", fake_study, "--trials", "1"], train_fn=fake) == 1
    assert main(["export", fake_study], train_fn=fake) == 1
    assert "no complete trial" in capsys.readouterr().err


def test_report_is_self_contained_with_tables_and_figures(finished_fake_study, isolated_home):
    study = finished_fake_study
    assert main(["report", study.study_name]) == 0
    html = (isolated_home / "studies" / "reports" / f"{study.study_name}.html").read_text()
    assert "<script src=" not in html, "plotly.js is inlined, not fetched"
    assert html.count("Plotly.newPlot") >= 3
    for heading in ("optimization history", "intermediate values", "timeline", "top ", "pruning statistics"):
        assert heading in html
    pruned = sum(t.state.name == "PRUNED" for t in study.trials)
    assert f"<td>PRUNED</td><td>{pruned}</td>" in html


def test_a_shorter_export_removes_the_ranks_an_earlier_one_wrote(finished_fake_study, isolated_home):
    name = finished_fake_study.study_name
    exports = isolated_home / "studies" / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    (exports / f"{name}.top3.yaml").write_text("# from an earlier export of this study\n")
    (exports / "other.top2.yaml").write_text("# another study's export stays\n")
    assert main(["export", name, "--top", "1"]) == 0
    assert sorted(p.name for p in exports.iterdir()) == [f"{name}.best.yaml", "other.top2.yaml"]


def _study_with(n_complete: int):
    import optuna

    study = optuna.create_study(study_name=f"few-{n_complete}", direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    layers = optuna.distributions.IntDistribution(1, 4)
    for i in range(n_complete):
        params = {"optim.lr": 1e-4 * (1.4**i), "model.num_layers": 1 + i % 4}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={"optim.lr": lr, "model.num_layers": layers},
            value=40.0 + 3 * (i % 4) + 0.1 * i, intermediate_values={1: 10.0 + i},
        ))  # fmt: skip
    return study


@pytest.mark.parametrize("n_complete", [2, 9])
def test_the_report_does_not_rank_parameters_from_too_few_trials(isolated_home, n_complete):
    from search.results.figures import MIN_TRIALS_FOR_IMPORTANCE
    from search.results.report import write_report

    html = write_report(_study_with(n_complete)).read_text()
    assert f"too few finished trials to rank parameters: {n_complete} complete" in html
    assert f"at least {MIN_TRIALS_FOR_IMPORTANCE}" in html and "<td>optim.lr</td><td>0." not in html


def test_the_report_ranks_parameters_once_there_are_enough_trials(isolated_home):
    from search.results.report import write_report

    html = write_report(_study_with(12)).read_text()
    assert "too few finished trials" not in html
    assert "<td>model.num_layers</td><td>" in html and "<td>optim.lr</td><td>" in html
