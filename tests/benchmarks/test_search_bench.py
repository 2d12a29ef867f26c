"""`python -m benchmarks search --quick`: the search-strategy benchmark's plumbing on a tiny budget, its
results contract, its resume, and the arithmetic the targets are read with.

    python -m pytest tests/benchmarks/test_search_bench.py -q
"""

from __future__ import annotations

import json

import optuna
import pytest

from benchmarks import search_arms
from benchmarks.search_results import epochs_to_reach, hyperband_floor_epochs, targets

pytestmark = pytest.mark.slow
FIELDS = {"best_val_avg", "test_avg_mean", "test_avg_seeds", "epochs_consumed", "epochs_to_best", "wall_s",
          "trials", "pruned", "failed", "trials_per_hour", "best_config"}  # fmt: skip


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("bench-home")
        mp.setenv("IM2LATEX_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        out = home / "out"
        assert search_arms.main(["--quick", "--out", str(out)]) == 0
        yield home, out, json.loads((out / "search_results.json").read_text())


def test_quick_run_writes_every_strategy_with_the_contract_fields(quick_run):
    home, out, results = quick_run
    assert set(results["strategies"]) == set(search_arms.STRATEGIES)
    assert results["code_version"] and results["machine"] and results["quick"] is True
    manifest = json.loads((home / "data" / "synth-small" / "manifest.json").read_text())
    assert results["dataset_hash"] == manifest["content_hash"]
    budget = results["budget_epochs"]
    for name, s in results["strategies"].items():
        assert FIELDS <= set(s), name
        assert len(s["test_avg_seeds"]) == len(search_arms.SEEDS) and s["seeds"] == [0, 1]
        assert all(0.0 <= v <= 100.0 for v in s["test_avg_seeds"])
        assert s["test_avg_mean"] == pytest.approx(sum(s["test_avg_seeds"]) / len(s["test_avg_seeds"]))
        assert s["best_config"]["trainer"]["epochs"] == results["max_epochs"]
        if name in search_arms.SEARCH_ARMS:  # the trial that would cross the budget is cut at it
            assert s["epochs_consumed"] == budget
            assert s["trials"] >= 1 and s["epochs_to_best"] <= s["epochs_consumed"]
        else:
            assert s["trials"] == 1 and s["epochs_consumed"] == results["max_epochs"]
    assert set(results["targets"]) == {
        "beats_course_best_on_test",
        "pruning_saves_epochs",
        "beats_random_on_val",
    }
    html = (out / "search_results.html").read_text()
    assert "plotly" in html.lower() and "tpe_hyperband" in html


def test_the_random_arm_samples_without_pruning_and_the_default_arm_prunes(quick_run):
    args = search_arms.argparse.Namespace(quick=True, spec="transformer-cpu", budget=None, out=None)
    plan = search_arms.make_plan(args)
    random_spec, default_spec = (
        search_arms.arm_spec(plan, "random"),
        search_arms.arm_spec(plan, "tpe_hyperband"),
    )
    assert (random_spec.sampler.name, random_spec.pruner.name) == ("random", "none")
    assert (default_spec.sampler.name, default_spec.pruner.name) == ("tpe", "hyperband")
    assert not random_spec.enqueue and not default_spec.enqueue


def test_a_second_run_resumes_without_training_again(quick_run, monkeypatch):
    home, out, first = quick_run
    import training.loop

    def no_training(*args, **kwargs):
        raise AssertionError("a finished benchmark trained again")

    monkeypatch.setattr(training.loop, "train", no_training)
    assert search_arms.main(["--quick", "--out", str(out)]) == 0
    again = json.loads((out / "search_results.json").read_text())
    for name, s in first["strategies"].items():
        assert again["strategies"][name]["test_avg_seeds"] == s["test_avg_seeds"]
        assert again["strategies"][name]["epochs_consumed"] == s["epochs_consumed"]


def _study(values_and_epochs):
    """A study whose trials ended in this order with (state, value, epochs reported)."""
    study = optuna.create_study(direction="maximize")
    for state, value, epochs in values_and_epochs:
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=value if state == optuna.trial.TrialState.COMPLETE else None,
                intermediate_values={e: float(e) for e in range(1, epochs + 1)},
            )
        )
    return study


def test_search_summary_counts_epochs_until_the_best_and_only_full_fidelity_scores():
    C, P = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    summary = search_arms.search_summary(_study([(C, 40.0, 8), (P, None, 2), (C, 55.0, 8), (C, 50.0, 8)]))
    assert summary["best_val_avg"] == 55.0 and summary["epochs_to_best"] == 18
    assert summary["epochs_consumed"] == 26 and (summary["trials"], summary["pruned"]) == (4, 1)
    assert summary["curve"] == [[8, 40.0], [10, 40.0], [18, 55.0], [26, 55.0]]
    assert epochs_to_reach(summary["curve"], 54.0) == 18 and epochs_to_reach(summary["curve"], 60.0) is None


def test_targets_are_read_from_the_figures():
    strategies = {
        "course_best": {"test_avg_mean": 40.0, "best_val_avg": 41.0},
        "random": {"best_val_avg": 50.0},
        "tpe": {"best_val_avg": 60.0, "epochs_to_best": 100, "curve": [[100, 60.0]]},
        "tpe_hyperband": {"test_avg_mean": 46.0, "best_val_avg": 59.5, "curve": [[20, 45.0], [30, 59.2]]},
    }
    t = targets(strategies)
    assert t["beats_course_best_on_test"]["met"] and t["beats_course_best_on_test"]["gain"] == 6.0
    assert t["pruning_saves_epochs"]["met"] and t["pruning_saves_epochs"]["fraction"] == 0.3
    assert t["beats_random_on_val"]["met"]
    strategies["tpe_hyperband"]["curve"] = [[20, 45.0], [40, 59.2]]  # 40 % of TPE's epochs: too many
    strategies["tpe_hyperband"]["test_avg_mean"] = 44.0
    t = targets(strategies)
    assert not t["pruning_saves_epochs"]["met"] and not t["beats_course_best_on_test"]["met"]


def test_the_epoch_targets_floor_is_the_startup_trials_plus_one_full_trial():
    """transformer-cpu: 2 random startup trials (copied complete) and one of its own, 8 epochs each, before
    Hyperband can hold a config it proposed; against a 64-epoch budget that is 24/64 = 0.375 of TPE's
    epochs at best."""
    spec = search_arms.load_spec("transformer-cpu")
    assert hyperband_floor_epochs(spec) == 24
    strategies = {
        "tpe": {"best_val_avg": 60.0, "epochs_to_best": 64, "curve": [[64, 60.0]]},
        "tpe_hyperband": {"best_val_avg": 59.5, "curve": [[24, 59.5]]},
    }
    epochs = targets(strategies, hyperband_floor_epochs(spec))["pruning_saves_epochs"]
    assert (epochs["floor_epochs"], epochs["floor_fraction"]) == (24, 0.375)
    assert epochs["floor_fraction"] > epochs["needed_fraction"] and not epochs["met"]


def test_both_tpe_arms_copy_the_random_arms_startup_trials_instead_of_training_them(quick_run):
    """Same seed, same draws, deterministic CPU training: the TPE arms' startup trials are random's first
    ones; Hyperband's copies carry the rung value its pruner records."""
    home, out, results = quick_run
    args = search_arms.argparse.Namespace(quick=True, spec="transformer-cpu", budget=None, out=None)
    plan = search_arms.make_plan(args)
    load = search_arms.studies.load_existing
    random = load(search_arms.arm_spec(plan, "random").name, str(plan.work / "random.journal"))
    tpe = load(search_arms.arm_spec(plan, "tpe").name, str(plan.work / "tpe.journal"))
    n = plan.spec.sampler.n_startup_trials
    copied = [t for t in tpe.trials if "copied_from" in t.user_attrs]
    assert len(copied) == n
    for mine, theirs in zip(copied, random.trials[:n], strict=True):
        assert mine.params == theirs.params and mine.intermediate_values == theirs.intermediate_values
        assert mine.user_attrs["copied_from"] == f"{random.study_name}#{theirs.number}"
        assert mine.datetime_start == theirs.datetime_start
        assert mine.datetime_complete == theirs.datetime_complete
    hb = load(search_arms.arm_spec(plan, "tpe_hyperband").name, str(plan.work / "tpe_hyperband.journal"))
    for mine, theirs in zip(hb.trials[:n], random.trials[:n], strict=True):
        assert mine.user_attrs["copied_from"] == f"{random.study_name}#{theirs.number}"
        assert mine.system_attrs["completed_rung_0"] == theirs.intermediate_values[1]  # quick: rung at 1


def test_copied_startup_trials_carry_the_rung_values_later_trials_are_cut_against():
    """transformer-cpu's Hyperband: one rung after epoch 3 of 8, the best third kept once 2 completed."""
    from search.pruners import create_pruner

    spec = search_arms.load_spec("transformer-cpu")
    study = optuna.create_study(study_name="hb", direction="maximize", pruner=create_pruner(spec))
    copied = [
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE,
            value=50.0 + i,
            intermediate_values={e: 10.0 * e + i for e in range(1, 9)},
        )
        for i in range(2)
    ]
    rungs = search_arms.replayed_rungs(spec, study, copied)
    assert rungs == [{"completed_rung_0": 30.0}, {"completed_rung_0": 31.0}]  # epoch 3; no epoch-9 rung
    for trial, rung in zip(copied, rungs, strict=True):
        trial.system_attrs = {**trial.system_attrs, **rung}
    study.add_trials(copied)

    def cut_at_epoch_3(value_at_3: float) -> bool:
        trial = study.ask()
        for epoch in (1, 2, 3):
            trial.report(value_at_3 if epoch == 3 else 0.0, epoch)
        cut = trial.should_prune()
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return cut

    # without the copied rung values a third trial would be alone at the rung, and kept whatever it scored
    assert cut_at_epoch_3(29.0) and not cut_at_epoch_3(40.0)


def test_render_writes_the_html_again_from_the_json_alone(quick_run, monkeypatch):
    home, out, results = quick_run
    (out / "search_results.html").unlink()
    import training.loop

    monkeypatch.setattr(training.loop, "train", lambda *a, **k: pytest.fail("--render trained"))
    assert search_arms.main(["--quick", "--out", str(out), "--render"]) == 0
    html = (out / "search_results.html").read_text()
    assert all(name in html for name in search_arms.STRATEGIES) and results["code_version"] in html
    assert len(html) < 200_000, "plotly.js is loaded from its CDN, not inlined"
