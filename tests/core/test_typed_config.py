"""python -m pytest tests/core -q"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from core.typed_config import (
    ConfigError,
    dump_yaml,
    flatten,
    from_dict,
    load_yaml,
    merge,
    parse_override,
    replace_path,
    to_dict,
)


@dataclass
class Inner:
    lr: float = 1e-3
    name: Literal["adam", "sgd"] = "adam"
    milestones: list[int] = field(default_factory=lambda: [5, 10])


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    epochs: int = 3
    tag: str | None = None
    size: tuple[int, int] = (64, 320)


@dataclass
class Base:
    kind: str = "a"

    @classmethod
    def resolve_subclass(cls, data):
        kinds = {"a": KindA, "b": KindB}
        kind = data.get("kind", "a")
        if kind not in kinds:
            raise ConfigError(f"unknown kind {kind!r}; valid kinds: {sorted(kinds)}")
        return kinds[kind]


@dataclass
class KindA(Base):
    kind: str = "a"
    width: int = 8


@dataclass
class KindB(Base):
    kind: str = "b"
    depth: int = 2


@dataclass
class Holder:
    model: Base = field(default_factory=KindA)


def test_round_trip_through_yaml(tmp_path):
    cfg = Outer(inner=Inner(lr=4e-4, name="sgd", milestones=[5]), epochs=7, tag="x", size=(32, 64))
    dump_yaml(cfg, tmp_path / "c.yaml")
    assert from_dict(Outer, load_yaml(tmp_path / "c.yaml")) == cfg


def test_unknown_key_names_the_dotted_path_and_the_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key inner\.lrr .*valid keys: lr, milestones, name"):
        from_dict(Outer, {"inner": {"lrr": 1.0}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"epochs": "three"}, r"epochs: expected an integer, got 'three'"),
        ({"epochs": True}, r"epochs: expected an integer"),
        ({"inner": {"name": "rmsprop"}}, r"inner\.name: 'rmsprop' is not one of \['adam', 'sgd'\]"),
        ({"inner": {"milestones": [1, "x"]}}, r"inner\.milestones\[1\]: expected an integer"),
        ({"size": [1, 2, 3]}, r"size: expected 2 items, got 3"),
        ({"inner": 5}, r"inner: expected a mapping"),
    ],
)
def test_mistyped_values_name_the_path(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_yaml_style_scientific_strings_and_whole_floats_are_accepted():
    cfg = from_dict(Outer, {"inner": {"lr": "1e-3"}, "epochs": 4.0})
    assert cfg.inner.lr == pytest.approx(1e-3) and cfg.epochs == 4 and isinstance(cfg.epochs, int)


def test_kind_selects_the_subclass_and_its_own_keys():
    assert from_dict(Holder, {"model": {"kind": "b", "depth": 5}}).model == KindB(depth=5)
    with pytest.raises(ConfigError, match=r"unknown key model\.depth for KindA"):
        from_dict(Holder, {"model": {"kind": "a", "depth": 5}})
    with pytest.raises(ConfigError, match=r"model: unknown kind 'c'"):
        from_dict(Holder, {"model": {"kind": "c"}})


def test_overrides_parse_as_yaml_and_replace_path_type_checks():
    assert parse_override("inner.lr=4e-4") == ("inner.lr", "4e-4")  # YAML 1.1 keeps this a string...
    cfg = replace_path(Outer(), "inner.lr", "4e-4")  # ...which the float field still accepts
    assert cfg.inner.lr == pytest.approx(4e-4)
    assert parse_override("inner.milestones=[3, 6]") == ("inner.milestones", [3, 6])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("inner.lr")
    with pytest.raises(ConfigError, match="epochs: expected an integer"):
        replace_path(Outer(), "epochs", "many")


def test_merge_is_deep_and_leaves_inputs_alone():
    base = {"a": {"b": 1, "c": 2}, "d": 3}
    out = merge(base, {"a": {"b": 10}})
    assert out == {"a": {"b": 10, "c": 2}, "d": 3} and base["a"]["b"] == 1


def test_flatten_gives_dotted_keys():
    assert flatten(to_dict(Outer()))["inner.lr"] == pytest.approx(1e-3)
    assert flatten({"x": {"y": {"z": [1]}}}) == {"x.y.z": [1]}


def test_load_yaml_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(tmp_path / "list.yaml")


def test_a_yaml_syntax_error_is_a_config_error_naming_the_file(tmp_path):
    (tmp_path / "broken.yaml").write_text("optim: {lr: 1e-3\n")
    with pytest.raises(ConfigError, match=r"broken.yaml is not valid YAML"):
        load_yaml(tmp_path / "broken.yaml")
