"""Which dotted config paths exist, so a spec's typo fails when it loads, not as a study of FAIL trials.

    python -c "from search.spec.config_paths import known_paths; print(sorted(known_paths()))"

A path is known when the resolved TrainConfig of at least one model family has it (`model.nhead` exists
for the transformer only, `model.decoder_hidden` for the RNN only).
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from core.typed_config import ConfigError, flatten, merge, set_path, to_dict
from search.spec.constraints import SpecError, check_constraint_syntax, constraint_paths
from search.spec.objectives import DECODE_METRICS, DECODE_PATHS, check_decode_paths, is_decode_constraint

# TrainConfig paths a study sets from its spec's own sections
DATASET_PATH = "data.dataset"
MONITOR_PATH, MONITOR_MODE_PATH = "trainer.monitor", "trainer.monitor_mode"


@cache
def known_paths() -> frozenset[str]:
    from models import list_models
    from training.config import load_train_config

    paths: set[str] = set()
    for kind in list_models():
        paths |= set(flatten(to_dict(load_train_config({"model": {"kind": kind}}))))
    return frozenset(paths)


def check_path(where: str, path: str) -> None:
    if path not in known_paths():
        prefix = path.rsplit(".", 1)[0]
        near = sorted(p for p in known_paths() if p.startswith(prefix + "."))
        hint = f"; known under {prefix}: {', '.join(near)}" if near else ""
        raise SpecError(f"{where}: {path!r} is not a config path{hint}")


def resolved_base(base: dict[str, Any]) -> dict[str, Any]:
    """The base config with every default filled in (what a `when:` on an unsearched path reads)."""
    from training.config import load_train_config

    try:
        return to_dict(load_train_config(base))
    except ConfigError as exc:
        raise SpecError(f"base/fixed: {exc}") from None


def base_config_dict(spec: Any) -> dict[str, Any]:  # a StudySpec (search.spec.parse imports this module)
    """The spec's base config with its fixed overrides, dataset and objective applied: a trial keeps as
    best.pt (and reports as its value) the epoch best on the metric the study optimises."""
    data = merge(spec.base, {})
    for path, value in spec.fixed.items():
        set_path(data, path, copy.deepcopy(value))
    if spec.dataset is not None:
        set_path(data, DATASET_PATH, spec.dataset)
    set_path(data, MONITOR_PATH, spec.objective.metric)
    set_path(data, MONITOR_MODE_PATH, "max" if spec.objective.direction == "maximize" else "min")
    return data


def check_spec_paths(spec: Any) -> None:  # a search.spec.parse.StudySpec
    """Every path the spec names must exist in the TrainConfig of some model family, and the base with
    its fixed values must load: a typo is a spec error, not a study whose every trial is pruned."""
    resolved_base(base_config_dict(spec))
    for path in spec.fixed:
        check_path("fixed", path)
    for param in spec.space:
        check_path("space", param.path)
        for parent in param.when:
            check_path(f"space.{param.path}.when", parent)
    for expr in spec.constraints:
        check_decode_paths(expr)
        for path in constraint_paths(expr):
            if path not in DECODE_PATHS:  # measured after training, not config
                check_path(f"constraints: {expr!r}", path)
        check_constraint_syntax(expr)
    _check_decode_speed_measured(spec)


def _check_decode_speed_measured(spec: Any) -> None:
    uses = [m for m in spec.objective.metrics if m in DECODE_METRICS]
    uses += [c for c in spec.constraints if is_decode_constraint(c)]
    if uses and resolved_base(base_config_dict(spec))["trainer"]["decode_speed_formulas"] <= 0:
        raise SpecError(
            f"{uses[0]!r} needs the decoding speed, but trainer.decode_speed_formulas is 0 (off); "
            "set it to the number of validation formulas to time, e.g. 32"
        )
