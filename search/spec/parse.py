"""Study specs: `studies/<NAME>.yaml` parsed into typed, validated objects.

    python -m search study smoke        # loads studies/smoke.yaml through load_spec("smoke")

A spec error names the key and the bad value (`space.model.nhead.low: ...`). The layout:

    dataset: synth-small                  # a prepared dataset name or folder (built when missing)
    base: {...} | path/to/train.yaml      # the TrainConfig every trial starts from
    fixed: {trainer.epochs: 3, ...}       # dotted overrides applied to every trial
    space:                                # config path -> distribution
      model.kind: {choices: [rnn, transformer]}
      model.decoder_hidden: {choices: [256, 512], when: {model.kind: rnn}}   # list values: {label: [..]}
      optim.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
      model.nhead: {type: int, low: 2, high: 8, step: 2, when: {model.kind: transformer}}
    constraints: ["model.d_model % model.nhead == 0"]
    budget: {n_trials: 20, timeout: null, max_epochs: 10}
    sampler: {name: tpe, seed: 0, n_startup_trials: 10}
    pruner: {name: hyperband, min_resource: 1, reduction_factor: 3}  # search.study.pruners
    objective: {metric: val/avg_score, direction: maximize}   # or {metrics: [...], directions: [...]}
    enqueue: [{label: baseline, params: {model.kind: transformer, optim.lr: 4.0e-4}}]
    warm_start: {from: [other-study, "postgresql://host/db#study"], top: 3}   # search.study.warm_start
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.paths import REPO_ROOT, home, studies_dir
from core.typed_config import ConfigError, from_dict, load_yaml
from search.spec.config_paths import check_spec_paths
from search.spec.constraints import SpecError, constraint_paths, evaluate_constraint
from search.spec.objectives import ObjectiveSpec, parse_objective
from search.spec.sections import (
    Budget,
    Distribution,
    EnqueuedTrial,
    PrunerSpec,
    SamplerSpec,
    SpecFile,
    WarmStartSpec,
    check_bounds,
    parse_warm_start,
)

__all__ = [
    "Budget",
    "EnqueuedTrial",
    "ParamSpec",
    "PrunerSpec",
    "SamplerSpec",
    "SpecError",
    "StudySpec",
    "evaluate_constraint",
    "load_spec",
    "parse_spec",
    "spec_path",
]

OPTUNA_SCALARS = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class ParamSpec:
    """One searched config path. Categorical choices are stored as label -> value."""

    path: str
    kind: str  # "categorical" | "int" | "float"
    choices: dict[str, Any] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high


@dataclass(frozen=True)
class StudySpec:
    name: str
    dataset: str | None
    base: dict[str, Any]
    fixed: dict[str, Any]
    space: tuple[ParamSpec, ...]
    constraints: tuple[str, ...] = ()
    budget: Budget = Budget()
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    objective: ObjectiveSpec = ObjectiveSpec()
    enqueue: tuple[EnqueuedTrial, ...] = ()
    warm_start: WarmStartSpec = WarmStartSpec()
    source: str = ""  # the spec file's text, recorded on the study
    data: dict[str, Any] = field(default_factory=dict)  # the parsed YAML with `base` inlined

    def param(self, path: str) -> ParamSpec:
        return next(p for p in self.space if p.path == path)


def spec_path(name_or_path: str | Path) -> Path:
    """`smoke` -> studies/smoke.yaml (the project's, or the repo's when IM2LATEX_HOME moved it)."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    for folder in (studies_dir(), REPO_ROOT / "studies"):
        path = folder / f"{name_or_path}.yaml"
        if path.exists():
            return path
    known = sorted(p.stem for p in studies_dir().glob("*.yaml")) or sorted(
        p.stem for p in (REPO_ROOT / "studies").glob("*.yaml")
    )
    raise FileNotFoundError(
        f"no study spec {name_or_path!r}: expected studies/{name_or_path}.yaml; known: {known}"
    )


def load_spec(name_or_path: str | Path) -> StudySpec:
    path = spec_path(name_or_path)
    text = path.read_text(encoding="utf-8")
    data = load_yaml(path)
    try:
        return parse_spec(data, default_name=path.stem, base_dir=path.parent, source=text)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


def parse_spec(
    data: dict[str, Any], *, default_name: str, base_dir: Path | None = None, source: str = ""
) -> StudySpec:
    try:
        raw = from_dict(SpecFile, data)  # every key and type, checked once, with its dotted path
    except ConfigError as exc:
        raise SpecError(str(exc)) from None
    name = raw.name if raw.name is not None else default_name
    if not name or "/" in name:
        raise SpecError(f"name: {name!r} must be a non-empty string without '/'")
    check_bounds(raw.budget, raw.pruner)
    base = _base(raw.base, base_dir)
    space = _space(raw.space, raw.fixed)
    spec = StudySpec(
        name=name,
        dataset=raw.dataset,
        base=base,
        fixed=dict(raw.fixed),
        space=space,
        constraints=_constraints(raw.constraints),
        budget=raw.budget,
        sampler=raw.sampler,
        pruner=raw.pruner,
        objective=parse_objective(raw.objective),
        warm_start=parse_warm_start(raw.warm_start),
        source=source,
        data={**data, "base": base},
    )
    check_spec_paths(spec)
    return dataclasses.replace(spec, enqueue=_enqueue(raw.enqueue, spec))


def _base(value: dict[str, Any] | str | None, base_dir: Path | None) -> dict[str, Any]:
    if not isinstance(value, str):
        return value or {}
    for folder in (base_dir, home(), Path.cwd()):
        if folder is not None and (Path(folder) / value).exists():
            return load_yaml(Path(folder) / value)
    raise SpecError(f"base: config file {value!r} not found (relative to the spec or the repository)")


def _space(value: dict[str, Distribution], fixed: dict[str, Any]) -> tuple[ParamSpec, ...]:
    if not value:
        raise SpecError("space: must be a non-empty mapping of config path -> distribution")
    params: dict[str, ParamSpec] = {}
    for path, dist in value.items():
        if path in fixed:
            raise SpecError(f"space.{path}: also set under fixed; keep it in one place")
        param = _param(path, dist)
        for parent, options in param.when.items():
            if parent in value and parent not in params:
                raise SpecError(f"space.{path}.when: parent {parent!r} must be declared before {path!r}")
            bad = [o for o in options if parent in params and not params[parent].contains(o)]
            if bad:
                raise SpecError(f"space.{path}.when.{parent}: {bad[0]!r} is not a value {parent} can take")
        params[path] = param
    return tuple(params.values())


def _param(path: str, dist: Distribution) -> ParamSpec:
    where = f"space.{path}"
    when = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in (dist.when or {}).items()}
    kind = dist.type or ("categorical" if dist.choices is not None else None)
    if kind == "categorical":
        return ParamSpec(path, "categorical", choices=_choices(where, dist.choices), when=when)
    if kind is None or dist.low is None or dist.high is None:
        raise SpecError(f"{where}: give {{choices: [...]}} or {{type: int|float, low: ..., high: ...}}")
    low, high, step = dist.low, dist.high, dist.step
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise SpecError(f"{where}: low {low!r} and high {high!r} must be integers for type int")
    if not low < high:
        raise SpecError(f"{where}: low {low!r} must be below high {high!r}")
    if dist.log and (low <= 0 or step is not None):
        raise SpecError(f"{where}.log: a log scale needs low > 0 and no step (low={low!r}, step={step!r})")
    if step is not None and step <= 0:
        raise SpecError(f"{where}.step: {step!r} must be a positive number")
    if kind == "int":
        if step is not None and not step.is_integer():
            raise SpecError(f"{where}.step: {step!r} must be a whole number for an int parameter")
        low, high, step = int(low), int(high), (int(step) if step is not None else None)
    return ParamSpec(path, kind, low=low, high=high, log=dist.log, step=step, when=when)


def _choices(where: str, choices: list[Any] | dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(choices, dict) and choices:
        return {str(label): value for label, value in choices.items()}
    if not choices:
        raise SpecError(f"{where}.choices: {choices!r} must be a non-empty list or a label -> value mapping")
    for choice in choices:
        if not isinstance(choice, OPTUNA_SCALARS):
            raise SpecError(
                f"{where}.choices: {choice!r} is not a scalar; give labels for lists or mappings, "
                "e.g. choices: {r34-r18: [34, 34, 18]}"
            )
    if len(set(map(repr, choices))) != len(choices):
        raise SpecError(f"{where}.choices: {choices!r} repeats a value")
    return {choice: choice for choice in choices}


def _constraints(value: list[str]) -> tuple[str, ...]:
    for expr in value:
        try:
            constraint_paths(expr)
        except SyntaxError as exc:
            raise SpecError(f"constraints: {expr!r} is not a valid expression ({exc.msg})") from None
    return tuple(value)


def _enqueue(value: list[EnqueuedTrial], spec: StudySpec) -> tuple[EnqueuedTrial, ...]:
    paths = {p.path for p in spec.space}
    for i, item in enumerate(value):
        for path, val in item.params.items():
            where = f"enqueue[{i}].params.{path}"
            if path not in paths:
                raise SpecError(f"{where}: not a searched path; searched: {', '.join(sorted(paths))}")
            param = spec.param(path)
            if not param.contains(val):
                allowed = param.choices if param.kind == "categorical" else f"[{param.low}, {param.high}]"
                raise SpecError(f"{where}: {val!r} is outside the space; allowed: {allowed}")
    named = (dataclasses.replace(item, label=item.label or f"baseline-{i}") for i, item in enumerate(value))
    return tuple(named)
