"""`python -m benchmarks search --quick`: the search-strategy benchmark's plumbing on a tiny budget, its
results contract, its resume, and the arithmetic the targets are read with.

    python -m pytest tests/benchmarks/test_search_bench.py -q
"""

from __future__ import annotations

import json

import optuna
import pytest

from benchmarks import search_arms
from benchmarks.search_results import best_so_far, mean_curve, pruning_verdict, targets

pytestmark = pytest.mark.slow
CONTRACT = {"search_seeds", "epochs_consumed_max", "best_val_avg_mean", "best_val_avg_seeds", "test_seeds",
            "test_avg_mean", "test_avg_seeds", "selected_run_test_avg", "curve_mean",
            "best_config"}  # fmt: skip


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
    assert results["default_arm"] == search_arms.DEFAULT_ARM == "tpe_hyperband"
    manifest = json.loads((home / "data" / "synth-small" / "manifest.json").read_text())
    assert results["dataset_hash"] == manifest["content_hash"]
    budget, epochs = results["budget_epochs"], results["max_epochs"]
    for name, s in results["strategies"].items():
        assert CONTRACT <= set(s), name
        assert s["test_seeds"] and set(s["test_seeds"]).isdisjoint({0}), "test seeds no trial trained with"
        assert len(s["test_avg_seeds"]) == len(s["test_seeds"])
        assert all(0.0 <= v <= 100.0 for v in s["test_avg_seeds"])
        assert s["test_avg_mean"] == pytest.approx(sum(s["test_avg_seeds"]) / len(s["test_avg_seeds"]))
        vals = s["best_val_avg_seeds"]
        assert vals and s["best_val_avg_mean"] == pytest.approx(sum(vals) / len(vals))
        assert s["selected_run_test_avg"] is not None  # the selected run is scored, apart from the mean
        assert s["best_config"]["trainer"]["epochs"] == epochs
        if name in search_arms.SEARCH_ARMS:  # every seed spends the budget exactly: none goes over it
            assert s["search_seeds"] == [11] and s["test_seeds"] == [1]  # search seed i -> test seed i
            assert [r["epochs_consumed"] for r in s["runs"]] == [budget]
            assert s["curve_mean"][-1][0] == budget
        elif name == "hand_tuning":  # the sweep spends the budget at full fidelity
            assert s["search_seeds"] == [] and s["trials"] == budget // epochs
            assert s["test_seeds"] == [1, 2]  # a hand arm's one config, retrained with every test seed
            assert s["epochs_consumed_max"] == budget
        else:
            assert s["trials"] == 1 and s["epochs_consumed_max"] == epochs and s["test_seeds"] == [1, 2]
    t = results["targets"]
    assert t["within_budget"]["met"] and set(t) == {
        "within_budget", "default_beats_random_on_test", "default_beats_hand_tuning_on_test", "pruning"}
    assert t["pruning"]["verdict"] is not None
    html = (out / "search_results.html").read_text()
    assert "plotly" in html.lower() and "tpe_hyperband" in html and "hand_tuning" in html


def test_quick_run_exercises_every_arms_logic(quick_run):
    """TPE proposes beyond the copied startup trials in both TPE arms, Hyperband cuts, random never does,
    for every search seed."""
    home, out, results = quick_run
    plan = _quick_plan()
    n = plan.spec.sampler.n_startup_trials
    for seed in plan.search_seeds:
        for arm in ("tpe", "tpe_hyperband"):
            study = _load(plan, arm, seed)
            own = [t for t in study.trials if "copied_from" not in t.user_attrs]
            assert len(study.trials) > n and own, f"{arm} seed {seed}: no TPE proposal"
        cut = [t for t in _load(plan, "tpe_hyperband", seed).trials if t.state.name == "PRUNED"]
        assert cut, f"Hyperband cut nothing with seed {seed}"
        assert not [t for t in _load(plan, "random", seed).trials if t.state.name == "PRUNED"]
    assert results["strategies"]["tpe_hyperband"]["pruned"] >= 1


def _quick_plan():
    args = search_arms.argparse.Namespace(quick=True, spec="transformer-cpu", budget=None, out=None)
    return search_arms.make_plan(args)


def _load(plan, arm, seed=None):
    spec = search_arms.arm_spec(plan, arm, seed)
    return search_arms.studies.load_existing(spec.name, str(search_arms.journal(plan, arm, seed)))


def test_the_random_arm_samples_without_pruning_and_the_default_arm_prunes(quick_run):
    plan = _quick_plan()
    random_spec, default_spec = (
        search_arms.arm_spec(plan, "random", 11),
        search_arms.arm_spec(plan, "tpe_hyperband", 11),
    )
    assert (random_spec.sampler.name, random_spec.pruner.name) == ("random", "none")
    assert (default_spec.sampler.name, default_spec.pruner.name) == ("tpe", "hyperband")
    assert random_spec.sampler.seed == default_spec.sampler.seed == 11
    assert not random_spec.enqueue and not default_spec.enqueue
    hand = search_arms.arm_spec(plan, "hand_tuning")
    assert hand.pruner.name == "none" and len(hand.enqueue) == hand.budget.n_trials == 5


def test_a_second_run_resumes_without_training_again(quick_run):
    home, out, first = quick_run

    def no_training(*args, **kwargs):
        raise AssertionError("a finished benchmark trained again")

    assert search_arms.main(["--quick", "--out", str(out)], train_fn=no_training) == 0
    again = json.loads((out / "search_results.json").read_text())
    for name, s in first["strategies"].items():
        assert again["strategies"][name]["test_avg_seeds"] == s["test_avg_seeds"]
        assert again["strategies"][name]["runs"] == s["runs"]


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
    assert best_so_far(summary["curve"], 7) is None and best_so_far(summary["curve"], 17) == 40.0


def test_the_mean_curve_starts_once_every_seed_has_a_best_and_carries_the_range():
    runs = [{"curve": [[2, 10.0], [4, 30.0]]}, {"curve": [[3, 20.0], [4, 20.0]]}]
    curves = mean_curve(runs, budget=4)
    assert curves["curve_mean"] == [[3, 15.0], [4, 25.0]]
    assert curves["curve_low"] == [[3, 10.0], [4, 20.0]] and curves["curve_high"] == [[3, 20.0], [4, 30.0]]


def test_targets_are_read_from_the_figures():
    strategies = {
        "random": {"test_avg_mean": 40.0, "epochs_consumed_max": 32},
        "hand_tuning": {"test_avg_mean": 44.0, "epochs_consumed_max": 32},
        "tpe": {"test_avg_mean": 50.0, "test_avg_spread": 1.0, "best_val_avg_mean": 52.0,
                "epochs_consumed_max": 32},
        "tpe_hyperband": {"test_avg_mean": 49.5, "test_avg_spread": 2.0, "best_val_avg_mean": 51.0,
                          "epochs_consumed_max": 32},
    }  # fmt: skip
    t = targets(strategies, 32, "tpe_hyperband")
    assert t["within_budget"]["met"]
    assert t["default_beats_random_on_test"] == {"gain": 9.5, "needed": 5.0, "met": True}
    assert t["default_beats_hand_tuning_on_test"] == {"gain": 5.5, "needed": 5.0, "met": True}
    assert t["pruning"]["verdict"] == "no difference within the seeds' spread"
    assert t["pruning"]["hyperband_minus_tpe_val"] == -1.0
    strategies["hand_tuning"]["test_avg_mean"] = 45.0
    strategies["tpe"]["epochs_consumed_max"] = 33
    t = targets(strategies, 32, "tpe_hyperband")
    assert not t["default_beats_hand_tuning_on_test"]["met"] and not t["within_budget"]["met"]


def test_the_pruning_verdict_needs_a_gap_beyond_the_seeds_spread():
    tpe = {"test_avg_mean": 50.0, "test_avg_spread": 1.0}
    assert pruning_verdict(tpe, {"test_avg_mean": 53.0, "test_avg_spread": 1.5})["verdict"] == "hyperband"
    assert pruning_verdict(tpe, {"test_avg_mean": 47.0, "test_avg_spread": 2.0})["verdict"] == "no pruning"
    assert pruning_verdict(tpe, {"test_avg_mean": 51.0})["verdict"].startswith("no difference")
    assert pruning_verdict(tpe, {})["verdict"] is None


def test_both_tpe_arms_copy_the_random_arms_startup_trials_instead_of_training_them(quick_run):
    """Same seed, same draws, deterministic CPU training: the TPE arms' startup trials are random's first
    ones; Hyperband's copies carry the rung value its pruner records."""
    home, out, results = quick_run
    plan = _quick_plan()
    seed = plan.search_seeds[-1]
    random, tpe = _load(plan, "random", seed), _load(plan, "tpe", seed)
    n = plan.spec.sampler.n_startup_trials
    copied = [t for t in tpe.trials if "copied_from" in t.user_attrs]
    assert len(copied) == n
    for mine, theirs in zip(copied, random.trials[:n], strict=True):
        assert mine.params == theirs.params and mine.intermediate_values == theirs.intermediate_values
        assert mine.user_attrs["copied_from"] == f"{random.study_name}#{theirs.number}"
        assert mine.datetime_start == theirs.datetime_start
        assert mine.datetime_complete == theirs.datetime_complete
    hb = _load(plan, "tpe_hyperband", seed)
    for mine, theirs in zip(hb.trials[:n], random.trials[:n], strict=True):
        assert mine.user_attrs["copied_from"] == f"{random.study_name}#{theirs.number}"
        assert mine.system_attrs["completed_rung_0"] == theirs.intermediate_values[1]  # quick: rung at 1


def test_copied_startup_trials_carry_the_rung_values_later_trials_are_cut_against():
    """transformer-cpu's Hyperband: one rung after epoch 3 of 8, the best third kept once 2 completed."""
    from search.study.pruners import create_pruner

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


def test_render_writes_the_html_again_from_the_json_alone(quick_run):
    home, out, results = quick_run
    (out / "search_results.html").unlink()
    no_training = lambda *a, **k: pytest.fail("--render trained")  # noqa: E731
    assert search_arms.main(["--quick", "--out", str(out), "--render"], train_fn=no_training) == 0
    html = (out / "search_results.html").read_text()
    assert all(name in html for name in search_arms.STRATEGIES) and results["code_version"] in html
    assert len(html) < 200_000, "plotly.js is loaded from its CDN, not inlined"
