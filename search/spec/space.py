"""Sampling a spec's search space define-by-run, and turning a trial's params into a config dict.

    python -m search study smoke     # every trial goes through suggest_params -> build_config_dict

Conditional parameters are suggested only when their parent holds one of the listed values, so TPE
(with `group=True`) models each branch of the space on its own.
"""

from __future__ import annotations

import copy
from typing import Any

import optuna

from core.typed_config import flatten, set_path
from search.spec.config_paths import base_config_dict
from search.spec.objectives import is_decode_constraint
from search.spec.parse import ParamSpec, StudySpec, evaluate_constraint

# TrainConfig paths the harness itself sets (see training.config / docs/ARCHITECTURE.md).
EPOCHS_PATH = "trainer.epochs"
BATCH_PATH = "trainer.batch_size"
ACCUM_PATH = "trainer.grad_accum_steps"


def suggest_params(
    trial: optuna.Trial, spec: StudySpec, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Optuna params (labels for labelled categoricals) for every active path, in spec order.

    `context` is the flattened base config: a `when` on a path outside the space is checked there.
    """
    context = context or {}
    params: dict[str, Any] = {}
    for p in spec.space:
        if not _active(p, params, context, spec):
            continue
        if p.kind == "categorical":
            params[p.path] = trial.suggest_categorical(p.path, list(p.choices))
        elif p.kind == "int":
            params[p.path] = trial.suggest_int(p.path, p.low, p.high, step=p.step or 1, log=p.log)
        else:
            params[p.path] = trial.suggest_float(p.path, p.low, p.high, step=p.step, log=p.log)
    return params


def _active(param: ParamSpec, params: dict[str, Any], context: dict[str, Any], spec: StudySpec) -> bool:
    for parent, allowed in param.when.items():
        if parent in params:
            value = decode_value(spec, parent, params[parent])
            label = params[parent]
        elif parent in {p.path for p in spec.space}:
            return False  # the parent is itself inactive
        else:
            value = label = context.get(parent)
        if value not in allowed and label not in allowed:
            return False
    return True


def decode_value(spec: StudySpec, path: str, value: Any) -> Any:
    """An Optuna param value -> the config value (a label -> its list, say)."""
    param = next((p for p in spec.space if p.path == path), None)
    if param is not None and param.kind == "categorical":
        return copy.deepcopy(param.choices[value])
    return value


def build_config_dict(spec: StudySpec, params: dict[str, Any]) -> dict[str, Any]:
    """Base + fixed + decoded params, with the epoch budget applied."""
    data = base_config_dict(spec)
    labelled = {p.path for p in spec.space if p.kind == "categorical"}
    for path, value in params.items():  # a number goes into the config as Optuna drew it
        set_path(data, path, decode_value(spec, path, value) if path in labelled else value)
    cap = spec.budget.max_epochs
    if cap is not None:
        epochs = flatten(data).get(EPOCHS_PATH)
        set_path(data, EPOCHS_PATH, cap if epochs is None else min(int(epochs), cap))
    return data


def violated_constraints(spec: StudySpec, config: dict[str, Any]) -> list[str]:
    """The spec's config constraints that the flattened resolved config breaks (a `decode.*` one is judged
    once the trial has trained: search.spec.objectives.decode_violation)."""
    lookup = flatten(config)
    return [
        expr
        for expr in spec.constraints
        if not is_decode_constraint(expr) and not evaluate_constraint(expr, lookup)
    ]
