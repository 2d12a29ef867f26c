"""What a study optimises: one validation metric, or several at once (a Pareto front), possibly including
how fast the trained model decodes; and the constraints that can only be judged once a trial has trained.

    objective: {metric: val/avg_score, direction: maximize}                  # one objective, pruning works
    objective: {metrics: [val/avg_score, decode/ms_per_formula],             # a Pareto front; Optuna
                directions: [maximize, minimize]}                             # cannot prune these
    constraints: ["decode.ms_per_formula <= 20"]                              # judged after training

The first metric of a multi-objective study is the per-epoch one that picks a trial's best.pt; the others
are read at that epoch (a `val/*` metric) or measured on best.pt when training ends (`decode/*`,
training.decode_speed). A constraint that names `decode.*` is set with `trial.set_constraint("decode", v)`
once measured, so TPE learns where the slow models live while the pruner keeps cutting on accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.typed_config import ConfigError, check_choice, from_dict
from search.spec.constraints import SpecError, constraint_paths, violation
from training.config import MONITORABLE

DECODE_METRICS = ("decode/ms_per_formula", "decode/formulas_per_s")  # training.decode_speed's keys
DECODE_PATHS = tuple(m.replace("/", ".") for m in DECODE_METRICS)  # as constraints spell them
OBJECTIVE_METRICS = (*MONITORABLE, *DECODE_METRICS)
DIRECTIONS = ("maximize", "minimize")
EPOCH_VALUES_ATTR = "epoch_values"  # a multi-objective trial's per-epoch first metric ({"1": 41.2, ...})
DECODE_CONSTRAINT_KEY = "decode"  # Optuna keeps the first value set per key: the config checks use "spec"


@dataclass(frozen=True)
class ObjectiveSpec:
    metrics: tuple[str, ...] = ("val/avg_score",)
    directions: tuple[str, ...] = ("maximize",)

    @property
    def metric(self) -> str:
        """The per-epoch metric: what best.pt, early stopping and the pruner follow."""
        return self.metrics[0]

    @property
    def direction(self) -> str:
        return self.directions[0]

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1

    @property
    def label(self) -> str:
        return ", ".join(f"{m} ({d})" for m, d in zip(self.metrics, self.directions, strict=True))


@dataclass(frozen=True)
class _Single:  # the one-metric spelling, parsed strictly by core.typed_config
    metric: str = "val/avg_score"
    direction: str = "maximize"


def parse_objective(value: Any) -> ObjectiveSpec:
    try:
        if isinstance(value, dict) and ("metrics" in value or "directions" in value):
            return _parse_multi(value)
        single = from_dict(_Single, value, "objective")
        check_choice("objective.metric", single.metric, MONITORABLE)
        check_choice("objective.direction", single.direction, DIRECTIONS)
    except ConfigError as exc:
        raise SpecError(str(exc)) from None
    return ObjectiveSpec((single.metric,), (single.direction,))


def _parse_multi(value: dict[str, Any]) -> ObjectiveSpec:
    extra = sorted(set(value) - {"metrics", "directions"})
    if extra:
        raise SpecError(f"objective: {extra[0]!r} cannot be combined with metrics/directions; use one form")
    metrics, directions = value.get("metrics"), value.get("directions")
    if not isinstance(metrics, list) or not isinstance(directions, list) or len(metrics) != len(directions):
        raise SpecError(
            f"objective: metrics {metrics!r} and directions {directions!r} must be lists of the same length, "
            "e.g. {metrics: [val/avg_score, decode/ms_per_formula], directions: [maximize, minimize]}"
        )
    if len(metrics) < 2:
        raise SpecError("objective.metrics: one metric is spelled {metric: ..., direction: ...}")
    if len(set(metrics)) != len(metrics):
        raise SpecError(f"objective.metrics: {metrics!r} names a metric twice")
    check_choice("objective.metrics[0] (the per-epoch metric that picks best.pt)", metrics[0], MONITORABLE)
    for i, (metric, direction) in enumerate(zip(metrics, directions, strict=True)):
        check_choice(f"objective.metrics[{i}]", metric, OBJECTIVE_METRICS)
        check_choice(f"objective.directions[{i}]", direction, DIRECTIONS)
    return ObjectiveSpec(tuple(metrics), tuple(directions))


def is_decode_constraint(expr: str) -> bool:
    return any(path in DECODE_PATHS for path in constraint_paths(expr))


def check_decode_paths(expr: str) -> None:
    """A `decode.*` path must be one training.decode_speed measures."""
    for path in constraint_paths(expr):
        if path.startswith("decode.") and path not in DECODE_PATHS:
            measured = ", ".join(DECODE_PATHS)
            raise SpecError(f"constraints: {expr!r}: {path!r} is not measured; measured: {measured}")


def objective_values(objective: ObjectiveSpec, result: Any) -> list[float]:
    """The trial's value(s) from a training.loop.TrainResult: `val/*` at the best epoch, `decode/*` of
    best.pt. A missing or non-finite one is an error (the trial FAILs, the study goes on)."""
    found = {**(getattr(result, "best_metrics", None) or {}), **(getattr(result, "decode_speed", None) or {})}
    values = []
    for metric in objective.metrics:
        value = found.get(metric)
        if value is None or not math.isfinite(float(value)):
            why = "trainer.decode_speed_formulas must be > 0" if metric in DECODE_METRICS else ""
            raise RuntimeError(
                f"the training run reported no finite {metric!r} "
                f"(best_metrics={result.best_metrics!r}){'; ' + why if why else ''}"
            )
        values.append(float(value))
    return values


def set_constraint(trial: Any, key: str, value: float) -> None:  # an optuna Trial
    """`trial.set_constraint`, also on a trial Optuna retried after its worker died: the retry inherits the
    dead trial's system attrs, constraints included, and Optuna keeps a key's first value (warning each
    time). An equal value is left as it is; a new measurement (decoding speed) replaces the inherited one."""
    stored_key = f"constraints:{key}"  # how Optuna's set_constraint stores it
    stored = trial.storage.get_trial_system_attrs(trial._trial_id).get(stored_key)
    if stored is None:
        trial.set_constraint(key, value)
    elif float(stored) != float(value):
        trial.storage.set_trial_system_attr(trial._trial_id, stored_key, float(value))


def feasible(trial: Any) -> bool:  # an optuna FrozenTrial
    """False for a trial that broke a constraint (`decode.ms_per_formula <= 20`, judged after training)."""
    return all(value <= 0 for value in trial.constraints.values())


def decode_violation(constraints: tuple[str, ...], decode_speed: dict[str, float]) -> tuple[float, list[str]]:
    """(summed violation, the broken expressions) of the spec's decode constraints for a measured speed.
    The violation grows with the distance from feasibility, so TPE can tell slow from hopeless; a run that
    measured nothing breaks them all."""
    exprs = [c for c in constraints if is_decode_constraint(c)]
    lookup = {m.replace("/", "."): float(v) for m, v in (decode_speed or {}).items()}
    if not all(path in lookup for path in DECODE_PATHS):
        return float(len(exprs)), list(exprs)
    amounts = {expr: violation(expr, lookup) for expr in exprs}
    return sum(amounts.values()), [expr for expr, amount in amounts.items() if amount > 0]


def trial_metric(trial: Any) -> str:  # a FrozenTrial
    """The metric a trial's value is (its config's trainer.monitor, which its study set)."""
    return (trial.user_attrs.get("config") or {}).get("trainer", {}).get("monitor", "val/avg_score")
