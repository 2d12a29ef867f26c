"""The typed sections of a study spec besides its space: budget, sampler, pruner, enqueued trials and
warm start (read by core.typed_config's from_dict: its strict keys, types and errors)."""

from __future__ import annotations

from dataclasses import dataclass
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
    label: str
    params: dict[str, Any]  # Optuna param values (labels for labelled categoricals)


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


