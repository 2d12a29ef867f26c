"""A study spec as written: `SpecFile` and its typed sections, read by core.typed_config's from_dict (its
strict keys, its coercion, its errors naming the dotted key), as TrainConfig is. What types cannot say
(low < high, a parent declared before its child, a value inside the space) search.spec.parse checks, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from search.spec.constraints import SpecError


@dataclass(frozen=True)
class Budget:
    n_trials: int = 20
    timeout: float | None = None  # seconds, per `study` invocation
    max_epochs: int | None = None  # caps trainer.epochs and is Hyperband's max_resource
    total_epochs: int | None = None  # epochs all trials together may train (search.study.epoch_budget)


@dataclass(frozen=True)
class SamplerSpec:
    name: Literal["tpe", "random"] = "tpe"
    seed: int | None = None
    n_startup_trials: int = 10


@dataclass(frozen=True)
class PrunerSpec:
    name: Literal["hyperband", "successive_halving", "median", "percentile", "none"] = "hyperband"
    min_resource: int = 1
    reduction_factor: int = 3
    n_startup_trials: int | None = None  # trials that complete before any is cut (search.study.pruners)
    n_warmup_steps: int = 0  # median, percentile
    percentile: float = 75.0  # percentile: the top share (%) of trials kept at each epoch (Optuna's meaning)


@dataclass(frozen=True)
class EnqueuedTrial:
    params: dict[str, Any]  # Optuna param values (labels for labelled categoricals)
    label: str = ""  # "baseline-<i>" when not given


@dataclass(frozen=True)
class Distribution:
    """One `space` entry as written: {choices: [...]} or {type: int|float, low, high, log, step}, with an
    optional `when: {parent path: value(s)}`."""

    type: Literal["categorical", "int", "float"] | None = None
    choices: list[Any] | dict[str, Any] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    when: dict[str, Any] | None = None


@dataclass(frozen=True)
class SpecFile:
    """studies/<NAME>.yaml as written (search.spec.parse's module docstring shows the layout)."""

    name: str | None = None
    dataset: str | None = None
    base: dict[str, Any] | str | None = None  # an inline TrainConfig or a path to a YAML config
    fixed: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Distribution] = field(default_factory=dict)
    constraints: list[str] = field(default_factory=list)
    budget: Budget = Budget()
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    objective: dict[str, Any] | None = None  # search.spec.objectives reads its two forms
    enqueue: list[EnqueuedTrial] = field(default_factory=list)
    warm_start: dict[str, Any] | None = None  # `from` is Python's keyword: parse_warm_start reads it


@dataclass(frozen=True)
class WarmStartSpec:
    sources: tuple[str, ...] = ()  # study names, storage URLs / .journal paths, or URL#study
    top: int = 0  # the best k foreign configs are enqueued to run first


def parse_warm_start(value: Any) -> WarmStartSpec:
    if value is None:
        return WarmStartSpec()
    sources = value.get("from") if isinstance(value, dict) else None
    sources = [sources] if isinstance(sources, str) else sources
    names_ok = isinstance(sources, list) and bool(sources) and all(isinstance(s, str) and s for s in sources)
    if not names_ok or set(value) - {"from", "top"}:
        raise SpecError(f"warm_start: {value!r} must be {{from: [study names or storage URLs], top: k}}")
    top = value.get("top", 0)
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise SpecError(f"warm_start.top: {top!r} must be a whole number >= 0 (foreign configs to run first)")
    return WarmStartSpec(tuple(sources), top)


def check_bounds(budget: Budget, pruner: PrunerSpec) -> None:
    """The sections' values that their types allow but a study cannot use."""
    if budget.n_trials < 1:
        raise SpecError(f"budget.n_trials: {budget.n_trials!r} must be at least 1")
    for key in ("max_epochs", "total_epochs"):
        if getattr(budget, key) is not None and getattr(budget, key) < 1:
            raise SpecError(f"budget.{key}: {getattr(budget, key)!r} must be at least 1")
    if not 0 < pruner.percentile < 100:
        raise SpecError(f"pruner.percentile: {pruner.percentile!r} must be between 0 and 100")
    if (pruner.n_startup_trials or 0) < 0:
        raise SpecError(f"pruner.n_startup_trials: {pruner.n_startup_trials!r} must be >= 0")
    if pruner.min_resource < 1 or pruner.reduction_factor < 2:
        raise SpecError(
            f"pruner: min_resource {pruner.min_resource!r} must be >= 1 and reduction_factor "
            f"{pruner.reduction_factor!r} >= 2"
        )
