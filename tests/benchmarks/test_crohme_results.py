"""benchmarks/crohme_results.py: which trials it compares, that it never retrains a recorded run, and its
targets (the training itself is the loop's, tested in tests/training)."""

from __future__ import annotations

import optuna
import pytest

from benchmarks import crohme_results as bench


def _trial(value: float, lr: float, baseline: str | None = None) -> optuna.trial.FrozenTrial:
    attrs = {"config": {"optim": {"lr": lr}, "trainer": {"epochs": 8}}}
    if baseline:
        attrs["baseline"] = baseline
    return optuna.trial.create_trial(value=value, user_attrs=attrs)


@pytest.fixture
def study() -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    study.add_trials([_trial(20.0, 4e-4, "course-best"), _trial(35.0, 1e-3, "reference-default"),
                      _trial(50.0, 7e-4), _trial(41.0, 2e-3)])  # fmt: skip
    return study


def test_the_baselines_are_found_by_label_and_the_best_by_value(study):
    chosen = bench.chosen_trials(study)
    assert {k: t.number for k, t in chosen.items()} == {
        "course_best": 0, "reference_default": 1, "harness_best": 2,
    }  # fmt: skip


def test_a_minimised_study_picks_its_lowest_trial(study):
    low = optuna.create_study(direction="minimize")
    low.add_trials(study.trials)
    assert bench.chosen_trials(low)["harness_best"].number == 0


def test_a_recorded_run_with_the_same_config_and_data_is_reused_not_trained(study, monkeypatch, tmp_path):
    monkeypatch.setenv("IM2LATEX_HOME", str(tmp_path))
    trained = []

    def train(*args, **kwargs):
        trained.append(args)
        raise ZeroDivisionError  # stands for a training run: none is needed to see that one was started

    trial = study.trials[2]
    _, sha = bench.seeded_config(trial, 1, "hash-a")
    record = {"config_sha": sha, "seed": 1, "test_avg": 61.0, "test_exprate": 30.0}
    assert bench.run_seed("harness_best", trial, 1, "hash-a", [record], train_fn=train)["test_avg"] == 61.0
    with pytest.raises(ZeroDivisionError):  # another dataset is another experiment: trained again
        bench.run_seed("harness_best", trial, 1, "hash-b", [record], train_fn=train)
    assert len(trained) == 1


def test_targets_need_ten_points_and_a_higher_exprate_over_both_baselines():
    def config(avg, exprate):
        return {"test_avg": avg, "test_exprate": exprate}

    met = bench.targets({"harness_best": config(60, 30), "course_best": config(40, 10),
                         "reference_default": config(50, 29)})  # fmt: skip
    assert met["met"] and met["avg_margin"] == 10
    short = bench.targets({"harness_best": config(60, 30), "course_best": config(40, 10),
                           "reference_default": config(51, 20)})  # fmt: skip
    assert short["met"] is False
    lower = bench.targets({"harness_best": config(70, 30), "course_best": config(40, 31),
                           "reference_default": config(50, 20)})  # fmt: skip
    assert lower["met"] is False and lower["higher_exprate"] is False
    assert bench.targets({"harness_best": config(70, 30)})["met"] is None


def test_a_study_run_whose_trial_folder_is_gone_keeps_its_committed_figures(study, monkeypatch, tmp_path):
    """Trial folders stay on the machine that ran them; the committed context figures stand in, but only
    for the same trial."""
    monkeypatch.setenv("IM2LATEX_HOME", str(tmp_path))
    trial = study.trials[2]
    recorded = {"trial": 2, "val_avg": 50.0, "test_avg": 44.0}
    assert bench.study_run("s", trial, recorded) == recorded
    assert bench.study_run("s", trial, {**recorded, "trial": 3}) is None  # another trial's figures
    assert bench.study_run("s", trial, None) is None
