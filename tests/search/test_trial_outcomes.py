"""Trial outcomes with a fake training loop: states, MLflow mapping, OOM, NaN, exceptions, Ctrl-C.

python -m pytest tests/search/test_trial_outcomes.py -q
"""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from search.cli import main
from search.run.runner import run_worker
from search.spec.parse import SpecError, load_spec
from search.study.storage import create_storage
from search.study.studies import prepare_study
from search.tracking import RUN_STATUS, get_client


def _runs(study_name: str) -> dict[str, object]:
    client = get_client()
    experiment = client.get_experiment_by_name(study_name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return {r.info.run_name: r for r in runs}


def _sequence(*outcomes):
    """A behaviour that plays `outcomes` in call order, then 'ok'."""
    queue = list(outcomes)
    return lambda config: queue.pop(0) if queue else "ok"


def test_states_map_to_mlflow_and_a_failure_does_not_stop_the_study(fake_study, fake_training):
    fake = fake_training(_sequence("ok", "boom", "nan"))
    spec = load_spec(fake_study)
    prepare_study(spec, None)
    study = run_worker(spec, 7, None, train_fn=fake)
    trials = study.trials
    assert len(trials) == 7
    assert trials[0].user_attrs["baseline"] == "baseline" and trials[0].params["optim.lr"] == 1e-2
    assert trials[1].state == TrialState.FAIL and "boom" in trials[1].user_attrs["traceback"]
    assert trials[2].state == TrialState.PRUNED and trials[2].user_attrs["reason"] == "nan"
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials[3:]), (
        "it went on after FAIL"
    )
    runs = _runs(fake_study)
    client = get_client()
    parent = runs.pop(f"study-{fake_study}")
    for trial in trials:
        run = runs[f"trial-{trial.number}"]
        assert run.info.status == RUN_STATUS[trial.state.name], trial.number
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["optuna.state"] == trial.state.name
        for name, value in trial.params.items():
            assert run.data.params[f"optuna.{name}"] == str(value)
        if "config" in trial.user_attrs:
            assert run.data.params["optim.lr"] == str(trial.user_attrs["config"]["optim"]["lr"])
        if trial.state == TrialState.FAIL or not trial.intermediate_values:
            continue  # failed, or pruned before its first epoch (constraint, nan)
        history = client.get_metric_history(run.info.run_id, "val/avg_score")
        assert [m.step for m in history] == sorted(trial.intermediate_values)
        assert [m.value for m in history] == [
            trial.intermediate_values[s] for s in sorted(trial.intermediate_values)
        ]
        assert {"train/loss", "val/bleu4", "val/exact_match", "val/edit_score", "lr", "images_per_s"} <= set(
            run.data.metrics
        )
        if trial.state == TrialState.PRUNED and trial.user_attrs.get("reason") != "nan":
            assert run.data.tags["search.prune_epoch"] == str(trial.last_step)


def test_oom_retries_once_with_double_accumulation(fake_study, fake_training):
    fake = fake_training(lambda config: "oom" if config.trainer.grad_accum_steps == 1 else "ok")
    spec = load_spec(fake_study)
    prepare_study(spec, None)
    study = run_worker(spec, 1, None, train_fn=fake)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    assert [c.trainer.grad_accum_steps for c in fake.calls] == [1, 2]
    assert {c.trainer.batch_size for c in fake.calls} == {8}, "the effective batch stays the same"
    assert (
        trial.user_attrs["oom_retries"] == 1
        and trial.user_attrs["config"]["trainer"]["grad_accum_steps"] == 2
    )


def test_oom_twice_is_pruned_with_reason_oom(fake_study, fake_training):
    fake = fake_training(lambda config: "oom")
    spec = load_spec(fake_study)
    prepare_study(spec, None)
    study = run_worker(spec, 2, None, train_fn=fake)
    assert len(fake.calls) == 4, "each trial: the first try and one retry"
    for trial in study.trials:
        assert trial.state == TrialState.PRUNED and trial.user_attrs["reason"] == "oom"
        assert _runs(fake_study)[f"trial-{trial.number}"].info.status == "KILLED"


def test_constraint_violation_is_pruned_without_training(fake_study, fake_training):
    fake = fake_training()
    spec = load_spec(fake_study)
    study = prepare_study(spec, None)
    study.enqueue_trial(
        {"model.kind": "transformer", "model.d_model": 64, "model.nhead": 6, "optim.lr": 1e-3}
    )
    run_worker(spec, 2, None, train_fn=fake)
    trial = study.trials[1]
    assert trial.state == TrialState.PRUNED and trial.user_attrs["reason"] == "constraint"
    assert len(fake.calls) == 1
    assert _runs(fake_study)["trial-1"].info.status == "KILLED"


def test_resume_reuses_the_study_and_enqueues_baselines_once(fake_study, fake_training):
    fake = fake_training()
    assert main(["study", fake_study, "--trials", "2"], train_fn=fake) == 0
    assert main(["study", fake_study, "--trials", "2"], train_fn=fake) == 0
    study = optuna.load_study(study_name=fake_study, storage=create_storage(fake_study))
    assert len(study.trials) == 4
    assert sum("baseline" in t.user_attrs for t in study.trials) == 1
    assert study.user_attrs["dataset_hash"] == "fakehash" and study.user_attrs["spec"].startswith("\n# fake")
    runs = _runs(fake_study)
    assert sum(name.startswith("study-") for name in runs) == 1, "one parent run, reused on resume"
    assert runs[f"study-{fake_study}"].info.status == "FINISHED"


def test_ctrl_c_ends_the_trial_and_leaves_no_run_running(fake_study, fake_training):
    fake = fake_training(_sequence("ok", "interrupt"))
    assert main(["study", fake_study, "--trials", "3"], train_fn=fake) == 130
    runs = _runs(fake_study)
    assert {r.info.status for r in runs.values()} <= {"FINISHED", "KILLED", "FAILED"}
    assert runs["trial-1"].info.status == "KILLED" and "trial-2" not in runs


def test_a_trial_cut_by_ctrl_c_runs_again_when_the_study_resumes(fake_study, fake_training):
    fake = fake_training(_sequence("ok", "interrupt", "ok", "ok"))
    assert main(["study", fake_study, "--trials", "3"], train_fn=fake) == 130
    study = optuna.load_study(study_name=fake_study, storage=create_storage(fake_study))
    cut = study.trials[1]
    assert cut.state == TrialState.FAIL and cut.user_attrs["reason"] == "interrupted"
    assert main(["study", fake_study, "--trials", "1"], train_fn=fake) == 0
    study = optuna.load_study(study_name=fake_study, storage=create_storage(fake_study))
    rerun = study.trials[2]
    assert rerun.params == cut.params, "the resumed study runs the interrupted params first"
    assert rerun.state in (TrialState.COMPLETE, TrialState.PRUNED)  # it ran (the pruner may cut it)
    assert rerun.user_attrs["requeued_from"] == 1
    assert [t.user_attrs.get("requeued_from") for t in study.trials].count(1) == 1, "enqueued once"


def test_a_ctrl_c_while_a_trained_trial_is_recorded_still_runs_it_again(fake_study, fake_training):
    fake = fake_training()

    class CutWhileRecorded:
        @property
        def best_metrics(self):  # read by record_result, after training: the Ctrl-C lands there
            raise KeyboardInterrupt

    def train_then_cut(config, out_dir, **kwargs):
        fake(config, out_dir, **kwargs)  # the first trial (the baseline) trains all its epochs
        return CutWhileRecorded()

    assert main(["study", fake_study, "--trials", "3"], train_fn=train_then_cut) == 130
    study = optuna.load_study(study_name=fake_study, storage=create_storage(fake_study))
    cut = study.trials[0]
    assert cut.state == TrialState.FAIL and cut.user_attrs["reason"] == "interrupted", cut.user_attrs


def test_a_resumed_seeded_study_draws_new_params_not_the_same_stream_again(fake_study, fake_training):
    fake = fake_training()
    assert main(["study", fake_study, "--trials", "3"], train_fn=fake) == 0  # the baseline + 2 sampled
    assert main(["study", fake_study, "--trials", "2"], train_fn=fake) == 0
    study = optuna.load_study(study_name=fake_study, storage=create_storage(fake_study))
    first, resumed = study.trials[1:3], study.trials[3:5]
    assert [t.params for t in resumed] != [t.params for t in first]


def test_resuming_with_a_changed_distribution_is_a_clear_spec_error(fake_study, fake_training, isolated_home):
    fake = fake_training()
    assert main(["study", fake_study, "--trials", "1"], train_fn=fake) == 0
    path = isolated_home / "studies" / f"{fake_study}.yaml"
    path.write_text(path.read_text().replace("choices: [32, 48, 64]", "choices: [32, 64, 96]"))
    with pytest.raises(
        SpecError, match=r"space\.model\.d_model differs .*choices \[32, 48, 64\] -> choices \[32, 64, 96\]"
    ):
        prepare_study(load_spec(fake_study), None)
    assert main(["study", fake_study, "--trials", "1"], train_fn=fake) == 2
    study = optuna.load_study(study_name=fake_study, storage=create_storage(fake_study))
    assert len(study.trials) == 1, "no trial ran (and failed) on the changed space"


def test_without_trials_a_worker_stops_at_the_budget_shared_with_other_workers(fake_study, fake_training):
    prepare_study(load_spec(fake_study), None)
    other = optuna.load_study(study_name=fake_study, storage=create_storage(fake_study))
    dist = {"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}

    def another_worker_finishes_three(config):
        if not other.user_attrs.get("others_done"):
            other.set_user_attr("others_done", True)
            for _ in range(3):
                done = optuna.trial.create_trial(params={"optim.lr": 1e-3}, distributions=dist, value=1.0)
                other.add_trial(done)
        return "ok"

    fake = fake_training(another_worker_finishes_three)
    assert main(["worker", fake_study], train_fn=fake) == 0  # budget n_trials: 8; alone it would run all 8
    study = optuna.load_study(study_name=fake_study, storage=create_storage(fake_study))
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))) == 8


def test_a_worker_counts_the_trials_other_workers_are_running_against_the_budget(fake_study, fake_training):
    """Budget 8: another worker finishes 3 and is running 2 more when this one ends its first trial, so this
    one runs 3 in all, not 5 (which would end at 10)."""
    prepare_study(load_spec(fake_study), None)
    other = optuna.load_study(study_name=fake_study, storage=create_storage(fake_study))
    dist = {"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}
    held = []

    def another_worker_busy(config):
        if not held:
            for _ in range(3):
                done = optuna.trial.create_trial(params={"optim.lr": 1e-3}, distributions=dist, value=1.0)
                other.add_trial(done)
            held.extend(other.ask() for _ in range(2))  # RUNNING in the other worker
        return "ok"

    fake = fake_training(another_worker_busy)
    assert main(["worker", fake_study], train_fn=fake) == 0
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    study = optuna.load_study(study_name=fake_study, storage=create_storage(fake_study))
    # Counted as trials, not trainer calls: a sampled config that breaks the spec's constraint ends
    # PRUNED without training, and it still spends the budget.
    assert len(study.get_trials(states=finished)) == 3 + 3
    assert len(study.get_trials(states=(TrialState.RUNNING,))) == 2
    for trial in held:
        other.tell(trial, 1.0)
    assert len(study.get_trials(states=finished)) == 8


def test_an_experiment_deleted_in_the_ui_is_restored_not_fatal(fake_study, fake_training):
    fake = fake_training()
    assert main(["study", fake_study, "--trials", "1"], train_fn=fake) == 0
    client = get_client()
    client.delete_experiment(client.get_experiment_by_name(fake_study).experiment_id)
    assert main(["study", fake_study, "--trials", "1"], train_fn=fake) == 0
    assert client.get_experiment_by_name(fake_study).lifecycle_stage == "active"
    assert "trial-1" in _runs(fake_study)


def test_each_trial_builds_and_checks_its_config_once(fake_study, fake_training, monkeypatch):
    """The base config (base + fixed) is built once per trial and the TrainConfig read once: a spec value
    is not re-derived or re-checked along the way (the feasible ones reach training exactly as built)."""
    import search.spec.space as space
    import search.trial.outcomes as outcomes

    counts = {"base": 0, "load": 0}

    def counted(name, real):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(space, "base_config_dict", counted("base", space.base_config_dict))
    monkeypatch.setattr(outcomes, "from_dict", counted("load", outcomes.from_dict))
    fake = fake_training()
    spec = load_spec(fake_study)
    prepare_study(spec, None)
    study = run_worker(spec, 5, None, train_fn=fake)
    assert len(study.trials) == 5
    assert counts == {"base": 5, "load": 5}
    trained = {round(c.optim.lr, 12) for c in fake.calls}
    assert trained <= {round(t.params["optim.lr"], 12) for t in study.trials}, "lr from the spec, unchanged"


def test_the_worker_record_is_one_write_and_a_trial_without_one_is_recovered_by_age(
    fake_study, fake_training, monkeypatch
):
    import search.study.recovery as recovery

    spec = load_spec(fake_study)
    prepare_study(spec, None)
    study = run_worker(spec, 1, None, train_fn=fake_training())
    record = study.trials[0].user_attrs["worker"]
    assert set(record) == {"host", "pid", "started"} and "worker_pid" not in study.trials[0].user_attrs
    unrecorded = study.ask()  # RUNNING, its record never written (a disk that filled at its first write)
    assert recovery.recover_stale_trials(study) == [], "a trial just started may not have written it yet"
    monkeypatch.setattr(recovery, "UNRECORDED_GRACE_S", 0.0)
    assert recovery.recover_stale_trials(study) == [unrecorded.number]
    trials = study.get_trials(deepcopy=False)
    assert trials[unrecorded.number].state == TrialState.FAIL
    requeued = trials[-1]
    assert requeued.state == TrialState.WAITING and requeued.user_attrs["requeued_from"] == unrecorded.number
