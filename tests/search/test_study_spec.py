"""Spec parsing and search-space sampling: python -m pytest tests/search/test_study_spec.py -q"""

from __future__ import annotations

import re

import optuna
import pytest

from core.typed_config import flatten, to_dict
from search.spec.parse import SpecError, evaluate_constraint, load_spec, parse_spec
from search.spec.space import build_config_dict, suggest_params, violated_constraints
from search.study.pruners import create_pruner
from search.study.studies import create_sampler
from training.config import load_train_config

SHIPPED = ["smoke", "transformer", "transformer-cpu", "transformer-cpu-speed", "rnn", "crohme-cpu"]
MINIMAL = {"space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spec_samples_loadable_configs(name):
    spec = load_spec(name)
    assert spec.name == name and spec.source.startswith("#"), "a spec opens with its header comment"
    study = optuna.create_study(sampler=create_sampler(spec), direction="maximize")
    for item in spec.enqueue:
        study.enqueue_trial(item.params)
    for i in range(len(spec.enqueue) + 6):
        trial = study.ask()
        params = suggest_params(trial, spec)
        if i < len(spec.enqueue):
            assert params.items() >= spec.enqueue[i].params.items(), "enqueued baselines run as given"
        config = load_train_config(build_config_dict(spec, params))
        assert config.trainer.epochs <= spec.budget.max_epochs
        broken = violated_constraints(spec, to_dict(config))  # every shipped constraint splits heads evenly
        heads_split = config.model.kind != "transformer" or config.model.d_model % config.model.nhead == 0
        assert bool(broken) == (not heads_split), (broken, config.model)
        study.tell(trial, float(i))


def test_transformer_spec_enqueues_the_course_best_first():
    spec = load_spec("transformer")
    config = load_train_config(build_config_dict(spec, spec.enqueue[0].params))
    m = config.model
    assert (m.stage2, m.stage3, m.stage4, m.cut_after, m.nhead) == ("r34", "r34", "r18", 4, 4)
    assert (config.trainer.batch_size, config.optim.lr, config.optim.name) == (16, 4e-4, "adamw")
    assert (config.schedule.name, config.schedule.step_every, config.schedule.gamma) == ("multistep", 5, 0.5)
    assert m.dropout == 0.5 and config.augment.mixup_prob == 0.0
    assert min(config.augment.noise_prob, config.augment.blur_prob, config.augment.scale_prob) > 0


def test_conditional_params_are_sampled_only_when_their_parent_is_active():
    spec = parse_spec(
        {
            "space": {
                "model.kind": {"choices": ["rnn", "transformer"]},
                "model.nhead": {"choices": [2, 4], "when": {"model.kind": "transformer"}},
                "model.decoder_hidden": {"choices": [64, 128], "when": {"model.kind": ["rnn"]}},
            },
            "sampler": {"name": "random", "seed": 3},
        },
        default_name="cond",
    )
    study = optuna.create_study(sampler=create_sampler(spec))
    kinds = set()
    for _ in range(20):
        trial = study.ask()
        params = suggest_params(trial, spec)
        kinds.add(params["model.kind"])
        assert ("model.nhead" in params) == (params["model.kind"] == "transformer")
        assert ("model.decoder_hidden" in params) == (params["model.kind"] == "rnn")
        study.tell(trial, 0.0)
    assert kinds == {"rnn", "transformer"}


def test_labelled_choices_decode_to_their_values_and_epochs_are_capped():
    spec = parse_spec(
        {
            "base": {"model": {"kind": "rnn"}, "trainer": {"epochs": 50}},
            "space": {"model.cnn_channels": {"choices": {"small": [8, 16], "big": [32, 64]}}},
            "fixed": {"model.cnn_pools": ["2x2", "2x2"]},
            "budget": {"max_epochs": 3},
        },
        default_name="labels",
    )
    config = build_config_dict(spec, {"model.cnn_channels": "big"})
    assert config["model"]["cnn_channels"] == [32, 64]
    assert config["model"]["cnn_pools"] == ["2x2", "2x2"]
    assert config["trainer"]["epochs"] == 3


def test_constraints_evaluate_on_config_paths():
    expr = "model.kind != 'transformer' or model.d_model % model.nhead == 0"
    assert evaluate_constraint(expr, {"model.kind": "transformer", "model.d_model": 128, "model.nhead": 4})
    assert not evaluate_constraint(
        expr, {"model.kind": "transformer", "model.d_model": 128, "model.nhead": 6}
    )
    assert evaluate_constraint(expr, {"model.kind": "rnn"}), "short-circuit: rnn has no d_model"
    with pytest.raises(SpecError, match="not allowed"):
        evaluate_constraint("__import__('os').getcwd() == 1", {})


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"spaces": {}}, "unknown key spaces for SpecFile; valid keys: base, budget"),
        ({"space": {"optim.lr": {"type": "float", "low": 1e-2, "high": 1e-4}}}, "space.optim.lr: low 0.01"),
        ({"space": {"optim.lr": {"type": "float", "low": 0, "high": 1, "log": True}}}, "space.optim.lr.log"),
        ({"space": {"optim.lr": {"type": "normal", "low": 0, "high": 1}}}, "space.optim.lr.type: 'normal'"),
        ({"space": {"model.stages": {"choices": [[1, 2], [3]]}}}, "space.model.stages.choices: [1, 2]"),
        ({"space": {"optim.lr": {"choices": [1], "lo": 1}}}, "unknown key space.optim.lr.lo"),
        ({"sampler": {"name": "cmaes"}}, "sampler.name: 'cmaes'"),
        ({"pruner": {"name": "hyperband", "min_resourse": 2}}, "pruner.min_resourse"),
        ({"budget": {"n_trials": "ten"}}, "budget.n_trials: expected an integer, got 'ten'"),
        ({"enqueue": [{"label": "x", "params": {"optim.lr": 5.0}}]}, "enqueue[0].params.optim.lr: 5.0"),
        ({"enqueue": [{"params": {"optim.momentum": 0.9}}]}, "enqueue[0].params.optim.momentum"),
        ({"fixed": {"optim.lr": 0.1}}, "space.optim.lr: also set under fixed"),
        ({"constraints": ["model.d_model %% 2"]}, "constraints: 'model.d_model %% 2'"),
    ],
)
def test_bad_spec_names_the_key_and_value(patch, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec({**MINIMAL, **patch}, default_name="bad")


def test_when_parent_declared_after_child_is_an_error():
    space = {
        "model.nhead": {"choices": [2], "when": {"model.kind": "transformer"}},
        "model.kind": {"choices": ["transformer"]},
    }
    with pytest.raises(SpecError, match="parent 'model.kind' must be declared before"):
        parse_spec({"space": space}, default_name="order")


def test_spec_file_error_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("space: {optim.lr: {type: float, low: 1, high: 0}}\n")
    with pytest.raises(SpecError, match=r"broken.yaml: space.optim.lr: low 1"):
        load_spec(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"space": {"optim.lrr": {"choices": [1e-3]}}}, r"space: 'optim.lrr' is not a config path"),
        ({"fixed": {"optim.lrr": 1}}, r"base/fixed: unknown key optim.lrr for OptimConfig; valid keys: "),
        ({"base": {"optim": {"lrr": 1}}}, r"base/fixed: unknown key optim.lrr"),
        (
            {"space": {"optim.lr": {"choices": [1e-3], "when": {"optim.nme": "adamw"}}}},
            r"space.optim.lr.when: 'optim.nme' is not a config path",
        ),
        ({"constraints": ["model.d_modl % 2 == 0"]}, r"'model.d_modl' is not a config path"),
        ({"constraints": ["model.kind in ('transformer',)"]}, r"uses In, which is not allowed"),
    ],
)
def test_unknown_config_paths_and_unsupported_constraints_fail_when_the_spec_loads(change, message):
    with pytest.raises(SpecError, match=message):
        parse_spec({"space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2}}, **change},
                   default_name="x")  # fmt: skip


def test_a_constraint_on_another_families_knob_does_not_apply():
    from search.spec.constraints import evaluate_constraint

    rnn = {"model.kind": "rnn", "model.decoder_hidden": 64}
    assert evaluate_constraint("model.d_model % model.nhead == 0", rnn)
    transformer = {"model.d_model": 128, "model.nhead": 6}
    assert not evaluate_constraint("model.d_model % model.nhead == 0", transformer)


def test_a_constraint_on_a_missing_non_model_path_is_an_error_not_a_pass():
    with pytest.raises(SpecError, match="trainer.batch_sise is not a path"):
        evaluate_constraint("trainer.batch_sise >= 8", {"trainer.batch_size": 4})


def test_when_on_an_unsearched_path_reads_its_default():
    import optuna

    from search.spec.config_paths import resolved_base
    from search.spec.space import suggest_params

    spec = parse_spec({"space": {"model.nhead": {"choices": [2, 4], "when": {"model.kind": "transformer"}}}},
                      default_name="x")  # fmt: skip
    context = flatten(resolved_base({}))
    params = suggest_params(optuna.create_study().ask(), spec, context)
    assert set(params) == {"model.nhead"}, "the default model kind is the transformer"


def test_typed_sections_read_yaml_numbers_and_int_steps_must_be_whole():
    space = {"optim.lr": {"choices": [1e-3]}}
    spec = parse_spec({"space": space, "budget": {"timeout": "1e3"}}, default_name="x")
    assert spec.budget.timeout == 1000.0  # YAML 1.1 reads 1e3 as a string
    with pytest.raises(SpecError, match=r"space.model.num_layers.step: 0.5 must be a whole number"):
        parse_spec({"space": {"model.num_layers": {"type": "int", "low": 1, "high": 4, "step": 0.5}}},
                   default_name="x")  # fmt: skip


def test_a_percentile_pruner_cuts_only_the_bottom_of_the_field():
    """Keeping the top 75 % keeps a trial the median pruner would cut: only runs that do not learn go."""
    pruner = {"name": "percentile", "percentile": 75, "n_startup_trials": 4}
    spec = parse_spec({**MINIMAL, "pruner": pruner}, default_name="p")
    study = optuna.create_study(direction="maximize", pruner=create_pruner(spec))
    for value in (10.0, 20.0, 30.0, 40.0):
        trial = study.ask()
        trial.report(value, 1)
        study.tell(trial, value)
    verdicts = {}
    for value in (12.0, 18.0):  # the bottom quarter of 10..40 at epoch 1 ends at 17.5; their median is 25
        trial = study.ask()
        trial.report(value, 1)
        verdicts[value] = trial.should_prune()
        study.tell(trial, value)
    assert verdicts == {12.0: True, 18.0: False}
    with pytest.raises(SpecError, match="pruner.percentile"):
        parse_spec({**MINIMAL, "pruner": {"name": "percentile", "percentile": 100}}, default_name="p")


PRUNED = optuna.trial.TrialState.PRUNED


def _rung_verdicts(pruner_spec: dict, values: list[float]) -> list[bool]:
    """Each trial reports one value at the first rung (epoch 3 of 8) and is cut or completed."""
    data = {**MINIMAL, "pruner": pruner_spec, "budget": {"max_epochs": 8}}
    pruner = create_pruner(parse_spec(data, default_name="p"))
    study = optuna.create_study(direction="maximize", pruner=pruner)
    verdicts = []
    for value in values:
        trial = study.ask()
        trial.report(value, 3)
        verdicts.append(trial.should_prune())
        study.tell(trial, None if verdicts[-1] else value, state=PRUNED if verdicts[-1] else None)
    return verdicts


def test_hyperband_lets_its_startup_trials_complete_and_then_ranks_against_them():
    """Halving alone cuts the second trial for not beating the first; the guard lets it complete. After it,
    the same halving: the best of the first five at the rung goes on, and of six the top two."""
    hyperband = {"name": "hyperband", "min_resource": 3, "reduction_factor": 3}
    values = [10.0, 9.0, 1.0, 2.0, 3.0, 9.5]
    assert _rung_verdicts(hyperband, values) == [False, True, True, True, True, False]
    guarded = _rung_verdicts({**hyperband, "n_startup_trials": 2}, values)
    assert guarded == [False, False, True, True, True, False]
    with pytest.raises(SpecError, match="pruner.n_startup_trials"):
        parse_spec({**MINIMAL, "pruner": {**hyperband, "n_startup_trials": -1}}, default_name="p")
