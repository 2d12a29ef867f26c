"""The real smoke study (studies/smoke.yaml) end to end on CPU: real training, pruning, MLflow, resume,
export -> retrain. One study run shared by the assertions (module-scoped), about 2 minutes.
Resuming is covered with the fake loop in test_trial_outcomes.py (same CLI path, seconds instead of a minute).

    python -m pytest tests/search/test_smoke_study.py -q
"""

from __future__ import annotations

import pytest
import yaml
from optuna.trial import TrialState

from core.paths import REPO_ROOT, exports_dir, runs_dir
from search.cli import main
from search.study.studies import load_existing
from search.tracking import RUN_STATUS, get_client
from training.checkpoint import load_checkpoint
from training.config import load_train_config
from training.loop import train

pytestmark = pytest.mark.slow
FIRST_TRIALS = 3  # the two baselines (a good one, a hopeless one) and one sampled trial


@pytest.fixture(scope="module")
def smoke_home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("smoke-home")
        mp.setenv("IM2LATEX_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert main(["study", "smoke", "--trials", str(FIRST_TRIALS)]) == 0
        yield home


def _runs(name="smoke"):
    client = get_client()
    experiment = client.get_experiment_by_name(name)
    return client, {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


def test_smoke_study_completes_with_a_pruned_trial(smoke_home):
    study = load_existing("smoke", None)
    states = [t.state for t in study.trials]
    assert len(states) == FIRST_TRIALS
    assert TrialState.PRUNED in states, "the hopeless-lr baseline is cut after its first epoch"
    assert TrialState.COMPLETE in states
    good = next(t for t in study.trials if t.user_attrs.get("baseline") == "good-transformer")
    hopeless = next(t for t in study.trials if t.user_attrs.get("baseline") not in (None, "good-transformer"))
    # which of the good baseline and the sampled trial wins is a coin toss at 64 images and 3 epochs
    assert good.state == TrialState.COMPLETE and hopeless.state == TrialState.PRUNED
    assert study.best_trial.number != hopeless.number and study.best_value >= good.value
    assert len(study.user_attrs["dataset_hash"]) >= 8 and study.user_attrs["code_version"]
    assert "smoke" in study.user_attrs["spec"]


def test_every_trial_is_in_mlflow_with_state_params_and_curves(smoke_home):
    study = load_existing("smoke", None)
    client, runs = _runs()
    assert runs["study-smoke"].info.status == "FINISHED"
    # tagged so MLflow's UI opens the runs table, not its GenAI traces view
    assert client.get_experiment_by_name("smoke").tags["mlflow.experimentKind"] == "custom_model_development"
    for trial in study.trials:
        run = runs[f"trial-{trial.number}"]
        assert run.info.status == RUN_STATUS[trial.state.name]
        assert run.data.params["optim.lr"] == str(trial.user_attrs["config"]["optim"]["lr"])
        assert run.data.params["model.kind"] == trial.params["model.kind"]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/avg_score")]
        assert steps == list(range(1, trial.last_step + 1))
        for key in ("train/loss", "val/loss", "val/bleu4", "val/exact_match", "val/edit_score", "lr"):
            assert key in run.data.metrics, key
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "sample_predictions.json"} <= artifacts
        if trial.state == TrialState.COMPLETE:  # best.pt's decoding speed, measured when training ended
            assert trial.user_attrs["decode_ms_per_formula"] == run.data.metrics["decode/ms_per_formula"] > 0
            assert trial.user_attrs["decode_formulas_per_s"] == run.data.metrics["decode/formulas_per_s"] > 0
    parent_artifacts = {a.path for a in client.list_artifacts(runs["study-smoke"].info.run_id)}
    assert {"figures.html", "best_config.yaml"} <= parent_artifacts


def test_export_writes_a_config_that_trains(smoke_home, tmp_path):
    assert main(["export", "smoke"]) == 0
    path = exports_dir() / "smoke.best.yaml"
    config = load_train_config(path, ["trainer.epochs=1"])
    result = train(config, tmp_path / "retrain")
    assert result.best_checkpoint.exists() and len(result.history) == 1


def test_a_minimised_val_loss_objective_picks_the_lowest_loss_trial_and_epoch(smoke_home):
    """The study's objective travels into training: best.pt, the trial's value and the export all follow
    val/loss (minimised), not the loop's default val/avg_score."""
    spec = yaml.safe_load((REPO_ROOT / "studies" / "smoke.yaml").read_text())
    spec.pop("enqueue")
    spec["objective"] = {"metric": "val/loss", "direction": "minimize"}
    spec["pruner"] = {"name": "none"}
    spec["budget"] = {"n_trials": 2, "max_epochs": 2}  # two epochs: the best one is a choice
    (smoke_home / "studies" / "smoke-loss.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["study", "smoke-loss"]) == 0
    study = load_existing("smoke-loss", None)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 2
    for trial in complete:
        losses = trial.intermediate_values  # val/loss per epoch, as reported to Optuna
        assert trial.value == min(losses.values())
        lowest_epoch = min(losses, key=losses.get)
        best = load_checkpoint(runs_dir() / "studies" / "smoke-loss" / f"trial-{trial.number:04d}/best.pt")
        assert best["epoch"] == lowest_epoch and best["metrics"]["val/loss"] == trial.value
        assert best["config"]["trainer"]["monitor"] == "val/loss"
    assert main(["export", "smoke-loss"]) == 0
    exported = (exports_dir() / "smoke-loss.best.yaml").read_text()
    lowest = min(complete, key=lambda t: t.value)
    assert f"trial: {lowest.number}\n" in exported and "best val/loss of the trial" in exported
    assert load_train_config(exports_dir() / "smoke-loss.best.yaml").trainer.monitor_mode == "min"


def test_a_speed_accuracy_study_optimises_the_measured_decoding_speed(smoke_home, capsys):
    """Real tiny trainings with objective [val/avg_score max, decode/ms_per_formula min] and a decode
    constraint: each trial's second value is best.pt's own timed decoding, nothing is reported per epoch,
    and the front exports."""
    spec = yaml.safe_load((REPO_ROOT / "studies" / "smoke.yaml").read_text())
    spec.pop("enqueue")
    spec["objective"] = {
        "metrics": ["val/avg_score", "decode/ms_per_formula"],
        "directions": ["maximize", "minimize"],
    }
    spec["constraints"] = [*spec["constraints"], "decode.formulas_per_s >= 0.01"]
    spec["budget"] = {"n_trials": 2, "max_epochs": 1}
    spec["base"]["trainer"]["decode_speed_formulas"] = 4
    (smoke_home / "studies" / "smoke-speed.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["study", "smoke-speed"]) == 0
    study = load_existing("smoke-speed", None)
    client, runs = _runs("smoke-speed")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 2
    for trial in complete:
        run = runs[f"trial-{trial.number}"]
        assert (
            trial.values[1]
            == trial.user_attrs["decode_ms_per_formula"]
            == run.data.metrics["decode/ms_per_formula"]
        )
        best = load_checkpoint(runs_dir() / "studies" / "smoke-speed" / f"trial-{trial.number:04d}/best.pt")
        assert trial.values[0] == best["metrics"]["val/avg_score"]
        assert trial.intermediate_values == {} and trial.constraints == {"spec": 0.0, "decode": 0.0}
        assert trial.user_attrs["epoch_values"] == {"1": trial.values[0]}  # the curve replay compares
    assert main(["replay", "smoke-speed", "--trial", str(complete[0].number)]) == 0
    assert "identical to the recorded curve" in capsys.readouterr().out
    assert main(["export", "smoke-speed", "--pareto"]) == 0
    assert len(list(exports_dir().glob("smoke-speed.pareto-*.yaml"))) == len(study.best_trials) >= 1


def test_replay_reproduces_a_trials_recorded_curve_exactly(smoke_home, capsys):
    study = load_existing("smoke", None)
    trial = next(t for t in study.trials if t.user_attrs.get("baseline") == "good-transformer")
    assert main(["replay", "smoke", "--trial", str(trial.number)]) == 0
    out = capsys.readouterr().out
    assert "identical to the recorded curve" in out
    replays = list((runs_dir() / "replays" / "smoke").glob(f"trial-{trial.number:04d}-*"))
    assert len(replays) == 1 and (replays[0] / "best.pt").exists()
    replayed = load_checkpoint(replays[0] / "best.pt")["metrics"]["val/avg_score"]
    assert replayed == trial.value  # equality, not closeness
    _, runs = _runs()
    assert runs[f"replay-trial-{trial.number}"].data.tags["search.replay_of"] == str(trial.number)


def test_replay_on_data_that_hashes_differently_names_both_hashes(smoke_home, capsys, monkeypatch):
    monkeypatch.setattr("search.study.studies.dataset_hash", lambda dataset: "0123abcd")
    assert main(["replay", "smoke", "--trial", "0"]) == 2
    err = capsys.readouterr().err
    recorded = load_existing("smoke", None).user_attrs["dataset_hash"]
    assert "0123abcd" in err and recorded in err and len(err.strip().splitlines()) == 1


def test_a_trial_cut_after_epoch_2_of_4_resumes_from_last_pt(smoke_home, monkeypatch, tmp_path):
    """Ctrl-C after epoch 2: the rerun trains only epochs 3-4 in the same folder, keeps its epoch numbers
    with Optuna, and ends exactly where an uninterrupted run of the same config ends."""
    from training.callbacks import Callback

    spec = yaml.safe_load((REPO_ROOT / "studies" / "smoke.yaml").read_text())
    spec["enqueue"] = spec["enqueue"][:1]  # the good transformer
    spec["base"]["trainer"].update(epochs=4, save_every_epoch=True)
    spec["budget"] = {"n_trials": 1, "max_epochs": 4}
    spec["pruner"] = {"name": "none"}
    (smoke_home / "studies" / "smoke-resume.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    trained = []

    class CutAfter2(Callback):
        def on_epoch_end(self, epoch, metrics):
            if epoch == 2:
                raise KeyboardInterrupt

    class Count(Callback):
        def on_epoch_end(self, epoch, metrics):
            trained.append(epoch)

    def cut(config, out, *, callbacks, resume_from=None):
        return train(config, out, callbacks=[*callbacks, CutAfter2()], resume_from=resume_from)

    def count(config, out, *, callbacks, resume_from=None):
        return train(config, out, callbacks=[*callbacks, Count()], resume_from=resume_from)

    assert main(["study", "smoke-resume"], train_fn=cut) == 130
    assert main(["study", "smoke-resume"], train_fn=count) == 0
    assert trained == [3, 4]
    study = load_existing("smoke-resume", None)
    cut, rerun = study.trials
    assert rerun.user_attrs["requeued_from"] == cut.number and rerun.user_attrs["resumed_at_epoch"] == 2
    assert rerun.user_attrs["trial_dir"] == cut.user_attrs["trial_dir"]
    straight = train(load_train_config(rerun.user_attrs["config"]), tmp_path / "straight")
    assert rerun.intermediate_values == {r["epoch"]: r["val/avg_score"] for r in straight.history}
    assert rerun.value == straight.best_metrics["val/avg_score"]
