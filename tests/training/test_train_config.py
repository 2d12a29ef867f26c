"""TrainConfig: YAML round-trip, overrides, and errors that name the bad key."""

from __future__ import annotations

import pytest

from core.typed_config import ConfigError
from models import CNNRNNConfig, ResNetTransformerConfig
from training.config import TrainConfig, load_train_config, save_train_config


def test_defaults_are_the_reference_transformer():
    cfg = load_train_config({})
    assert isinstance(cfg.model, ResNetTransformerConfig)
    assert (cfg.optim.name, cfg.schedule.name, cfg.schedule.gamma) == ("adamw", "multistep", 0.5)


def test_yaml_round_trip_keeps_every_value(tmp_path):
    cfg = load_train_config(
        {"model": {"kind": "rnn"}, "optim": {"name": "sgd", "lr": 0.1}, "schedule": {"milestones": [3, 7]},
         "augment": {"mixup_prob": 0.5}, "trainer": {"batch_size": 8, "grad_accum_steps": 2}}
    )
    path = tmp_path / "cfg.yaml"
    text = save_train_config(cfg, path, header="a test\nsecond line")
    assert text.startswith("# a test\n# second line\n")
    again = load_train_config(path)
    assert again == cfg
    assert isinstance(again.model, CNNRNNConfig)
    assert again.micro_batch_size == 4


def test_overrides_win_and_are_type_checked(tmp_path):
    path = tmp_path / "cfg.yaml"
    save_train_config(TrainConfig(), path)
    cfg = load_train_config(path, ["trainer.epochs=3", "optim.lr=5e-4", "model.d_model=64"])
    assert (cfg.trainer.epochs, cfg.optim.lr, cfg.model.d_model) == (3, 5e-4, 64)
    with pytest.raises(ConfigError, match="trainer.epochs"):
        load_train_config(path, ["trainer.epochs=many"])


def test_overrides_do_not_modify_the_callers_dict():
    source = {"trainer": {"epochs": 2}}
    load_train_config(source, ["trainer.epochs=9"])
    assert source == {"trainer": {"epochs": 2}}


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({"trainer": {"epoch": 3}}, ["trainer.epoch", "epochs", "grad_accum_steps"]),
        ({"optimizer": {}}, ["optimizer", "optim", "schedule", "trainer"]),
        ({"data": {"datset": "x"}}, ["data.datset", "dataset"]),
        ({"model": {"kind": "transformer", "nheads": 4}}, ["model.nheads", "nhead"]),
    ],
)
def test_unknown_key_error_names_it_and_the_valid_keys(data, names):
    with pytest.raises(ConfigError) as err:
        load_train_config(data)
    for name in names:
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"trainer": {"amp": "yes"}}, "trainer.amp"),
        ({"optim": {"lr": "fast"}}, "optim.lr"),
        ({"trainer": {"val_decode": "sample"}}, "trainer.val_decode"),
        ({"trainer": {"batch_size": 4, "grad_accum_steps": 8}}, "exceeds trainer.batch_size"),
        ({"trainer": {"monitor": "val/accuracy"}}, r"trainer.monitor: 'val/accuracy' is not one of"),
        ({"trainer": {"monitor_mode": "lowest"}}, "trainer.monitor_mode"),
    ],
)
def test_bad_values_are_rejected_with_their_path(data, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_train_config(data)


@pytest.mark.parametrize(("path", "value"), [("optim.name", "adamax"), ("schedule.name", "cyclic")])
def test_unknown_optimizer_or_schedule_names_fail_at_load_time(path, value):
    with pytest.raises(ConfigError, match=rf"{path}: '{value}' is not one of \['"):
        load_train_config({}, overrides=[f"{path}={value}"])
