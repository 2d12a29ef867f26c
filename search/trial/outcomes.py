"""What a trial's config, its end and its result leave on the Optuna trial (user attrs, constraints).

A sampled point that cannot train (a spec constraint, an invalid model) is pruned with the rule it breaks;
NaN loss prunes; any other exception is recorded with its traceback and re-raised (FAIL), and one that
left the GPU unusable is flagged `cuda_fatal`. A finished trial records ExpRate and its decoding speed,
and a trial too slow for the spec's `decode.*` constraints completes but is marked infeasible.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import optuna

from core.typed_config import ConfigError, from_dict, to_dict
from models import validate as validate_model
from search.spec.objectives import (
    DECODE_CONSTRAINT_KEY,
    decode_violation,
    is_decode_constraint,
    objective_values,
    set_constraint,
)
from search.spec.parse import StudySpec
from search.spec.space import violated_constraints
from search.study.devices import gpu_share
from search.trial.reporting import PruneTrial
from training.config import TrainConfig
from training.cuda_faults import is_sticky_cuda_error
from training.errors import NonFiniteLossError

log = logging.getLogger(__name__)
EXPRATE_KEYS = ("val/exact_match", "val/exprate_le1", "val/exprate_le2")  # the handwriting field's headline


def resolve_config(trial: optuna.Trial, spec: StudySpec, data: dict[str, Any]) -> TrainConfig:
    """The trial's TrainConfig from its config dict; an impossible point raises PruneTrial (checked by
    TrainConfig's own types, the spec's constraints, then the model family's rules, each once)."""
    try:
        config = from_dict(TrainConfig, data)  # `data` is this trial's own dict: no copy needed
    except ConfigError as exc:
        raise infeasible(trial, "invalid_config", str(exc)) from None
    resolved = to_dict(config)
    broken = violated_constraints(spec, resolved)
    set_constraint(trial, "spec", float(len(broken)))
    if broken:
        raise infeasible(trial, "constraint", "; ".join(broken))
    try:
        validate_model(config.model)
    except ConfigError as exc:
        raise infeasible(trial, "invalid_config", str(exc)) from None
    trial.set_user_attr("config", resolved)
    return config


def infeasible(trial: optuna.Trial, reason: str, detail: str) -> PruneTrial:
    trial.set_user_attr("reason", reason)
    trial.set_user_attr("detail", detail[:2000])
    return PruneTrial(reason, None, detail)


def record_failure(trial: optuna.Trial, exc: Exception) -> Exception:
    """Records why training ended early; returns what to raise (NaN loss becomes a PruneTrial)."""
    if isinstance(exc, PruneTrial):
        trial.set_user_attr("reason", exc.reason)
        trial.set_user_attr("prune_epoch", exc.epoch)
        return exc
    if isinstance(exc, NonFiniteLossError):
        trial.set_user_attr("reason", "nan")
        trial.set_user_attr("prune_epoch", exc.epoch)
        return PruneTrial("nan", exc.epoch, str(exc))
    trial.set_user_attr("reason", "cuda_fatal" if is_sticky_cuda_error(exc) else "exception")
    trial.set_user_attr("traceback", traceback.format_exc()[-8000:])
    log.warning("trial %d failed: %r", trial.number, exc)
    return exc


def record_result(trial: optuna.Trial, spec: StudySpec, result: Any, run: Any) -> float | list[float]:
    """The trial's objective value(s), with ExpRate, decoding speed and decode constraints recorded."""
    for key in EXPRATE_KEYS:
        if key in (result.best_metrics or {}):
            trial.set_user_attr(key.replace("/", "_"), float(result.best_metrics[key]))
    decode_speed = getattr(result, "decode_speed", None) or {}
    for key, value in decode_speed.items():
        trial.set_user_attr(key.replace("/", "_"), value)  # decode_ms_per_formula, decode_formulas_per_s
    if decode_speed and gpu_share() > 1:  # timed while other trials ran on the same GPU
        trial.set_user_attr("decode_speed_shared", gpu_share())
    if any(is_decode_constraint(c) for c in spec.constraints):
        amount, broken = decode_violation(spec.constraints, decode_speed)
        set_constraint(trial, DECODE_CONSTRAINT_KEY, amount)  # export and TPE steer away from it
        if broken:
            trial.set_user_attr("constraint_broken", broken)
            log.info("trial %d breaks %s", trial.number, "; ".join(broken))
            if run is not None:
                run.set_tags({"search.constraint_broken": "; ".join(broken)[:500]})
    values = objective_values(spec.objective, result)
    return values if spec.objective.multi else values[0]
