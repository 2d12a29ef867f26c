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
from core.typed_config import ConfigError, coerce, from_dict, load_yaml
from search.spec.config_paths import check_spec_paths
from search.spec.constraints import SpecError, constraint_paths, evaluate_constraint
from search.spec.objectives import ObjectiveSpec, parse_objective
from search.spec.sections import (
    Budget,
    EnqueuedTrial,
    PrunerSpec,
    SamplerSpec,
    WarmStartSpec,
    parse_warm_start,
)

__all__ = [
    "SpecError",
    "StudySpec",
    "ParamSpec",
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


TOP_KEYS = {
    "name",
    "dataset",
    "base",
    "fixed",
    "space",
    "constraints",
    "budget",
    "sampler",
    "pruner",
    "objective",
    "enqueue",
    "warm_start",
}


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
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise SpecError(f"unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(TOP_KEYS))}")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name or "/" in name:
        raise SpecError(f"name: {name!r} must be a non-empty string without '/'")
    dataset = data.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        raise SpecError(f"dataset: {dataset!r} must be a dataset name or folder, e.g. synth-small")
    base = _parse_base(data.get("base"), base_dir)
    fixed = _parse_fixed(data.get("fixed"))
    space = _parse_space(data.get("space"), fixed)
    constraints = _parse_constraints(data.get("constraints"), space)
    spec = StudySpec(
        name=name,
        dataset=dataset,
        base=base,
        fixed=fixed,
        space=space,
        constraints=constraints,
        budget=_section(Budget, data.get("budget"), "budget"),
        sampler=_section(SamplerSpec, data.get("sampler"), "sampler"),
        pruner=_section(PrunerSpec, data.get("pruner"), "pruner"),
        objective=parse_objective(data.get("objective")),
        warm_start=parse_warm_start(data.get("warm_start")),
        source=source,
        data={**data, "base": base},
    )
    _check_sections(spec)
    check_spec_paths(spec)
    enqueue = _parse_enqueue(data.get("enqueue"), spec)
    return dataclasses.replace(spec, enqueue=enqueue)


def _parse_base(value: Any, base_dir: Path | None) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        for folder in (base_dir, home(), Path.cwd()):
            if folder is not None and (Path(folder) / value).exists():
                return load_yaml(Path(folder) / value)
        raise SpecError(f"base: config file {value!r} not found (relative to the spec or the repository)")
    raise SpecError(f"base: {value!r} must be a mapping (an inline TrainConfig) or a path to a YAML config")


def _parse_fixed(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"fixed: {value!r} must map dotted config paths to values, e.g. trainer.epochs: 3")
    for key in value:
        if not isinstance(key, str) or not key:
            raise SpecError(f"fixed: key {key!r} must be a dotted config path such as optim.lr")
    return dict(value)


def _parse_space(value: Any, fixed: dict[str, Any]) -> tuple[ParamSpec, ...]:
    if not isinstance(value, dict) or not value:
        raise SpecError(f"space: {value!r} must be a non-empty mapping of config path -> distribution")
    params: list[ParamSpec] = []
    for path, dist in value.items():
        if path in fixed:
            raise SpecError(f"space.{path}: also set under fixed; keep it in one place")
        param = _parse_param(str(path), dist)
        for parent in param.when:
            earlier = [p.path for p in params]
            if parent in value and parent not in earlier:
                raise SpecError(f"space.{path}.when: parent {parent!r} must be declared before {path!r}")
            if parent in earlier:
                allowed = params[earlier.index(parent)]
                for option in param.when[parent]:
                    if not allowed.contains(option):
                        raise SpecError(
                            f"space.{path}.when.{parent}: {option!r} is not a value {parent} can take"
                        )
        params.append(param)
    return tuple(params)


PARAM_KEYS = {"type", "choices", "low", "high", "log", "step", "when"}


def _parse_param(path: str, dist: Any) -> ParamSpec:
    where = f"space.{path}"
    if not isinstance(dist, dict):
        raise SpecError(
            f"{where}: {dist!r} must be a mapping like {{choices: [...]}} or {{type: float, low, high}}"
        )
    unknown = sorted(set(dist) - PARAM_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(PARAM_KEYS))}")
    when = _parse_when(where, dist.get("when"))
    kind = dist.get("type", "categorical" if "choices" in dist else None)
    if kind == "categorical":
        return ParamSpec(path, "categorical", choices=_parse_choices(where, dist.get("choices")), when=when)
    if kind not in ("int", "float"):
        raise SpecError(f"{where}.type: {kind!r} is not one of ['categorical', 'int', 'float']")
    low, high, step, log = dist.get("low"), dist.get("high"), dist.get("step"), dist.get("log", False)
    for key, number in (("low", low), ("high", high)):
        try:
            number = coerce(float, number, f"{where}.{key}")  # the config language's numbers, "1e-3" too
        except ConfigError as exc:
            raise SpecError(str(exc)) from None
        if kind == "int" and not number.is_integer():
            raise SpecError(f"{where}.{key}: {number!r} must be an integer for type int")
        if key == "low":
            low = number
        else:
            high = number
    if not low < high:
        raise SpecError(f"{where}: low {low!r} must be below high {high!r}")
    if not isinstance(log, bool):
        raise SpecError(f"{where}.log: {log!r} must be true or false")
    if log and (low <= 0 or step is not None):
        raise SpecError(
            f"{where}.log: a log scale needs low > 0 and no step (got low={low!r}, step={step!r})"
        )
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
        raise SpecError(f"{where}.step: {step!r} must be a positive number")
    if kind == "int":
        if step is not None and float(step) != int(step):
            raise SpecError(f"{where}.step: {step!r} must be a whole number for an int parameter")
        low, high, step = int(low), int(high), (int(step) if step is not None else None)
    return ParamSpec(path, kind, low=low, high=high, log=log, step=step, when=when)


def _parse_choices(where: str, choices: Any) -> dict[str, Any]:
    if isinstance(choices, list) and choices:
        for choice in choices:
            if not isinstance(choice, OPTUNA_SCALARS):
                raise SpecError(
                    f"{where}.choices: {choice!r} is not a scalar; give labels for lists or mappings, "
                    "e.g. choices: {r34-r18: [34, 34, 18]}"
                )
        if len(set(map(repr, choices))) != len(choices):
            raise SpecError(f"{where}.choices: {choices!r} repeats a value")
        return {choice: choice for choice in choices}
    if isinstance(choices, dict) and choices:
        return {str(label): value for label, value in choices.items()}
    raise SpecError(f"{where}.choices: {choices!r} must be a non-empty list or a label -> value mapping")


def _parse_when(where: str, when: Any) -> dict[str, tuple[Any, ...]]:
    if when is None:
        return {}
    if not isinstance(when, dict) or not when:
        raise SpecError(
            f"{where}.when: {when!r} must map a parent path to its value(s), e.g. {{model.kind: rnn}}"
        )
    return {str(k): tuple(v) if isinstance(v, list) else (v,) for k, v in when.items()}


def _parse_constraints(value: Any, space: tuple[ParamSpec, ...]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(
            f"constraints: {value!r} must be a list of expressions like 'model.d_model % model.nhead == 0'"
        )
    for expr in value:
        try:
            constraint_paths(expr)
        except SyntaxError as exc:
            raise SpecError(f"constraints: {expr!r} is not a valid expression ({exc.msg})") from None
    return tuple(value)


def _section(cls: type, value: Any, key: str) -> Any:
    """A typed section (budget, sampler, ...): core.typed_config's strict keys and types."""
    try:
        return from_dict(cls, value, key)
    except ConfigError as exc:
        raise SpecError(str(exc)) from None


def _check_sections(spec: StudySpec) -> None:
    if spec.budget.n_trials < 1:
        raise SpecError(f"budget.n_trials: {spec.budget.n_trials!r} must be at least 1")
    for key in ("max_epochs", "total_epochs"):
        if getattr(spec.budget, key) is not None and getattr(spec.budget, key) < 1:
            raise SpecError(f"budget.{key}: {getattr(spec.budget, key)!r} must be at least 1")
    if not 0 < spec.pruner.percentile < 100:
        raise SpecError(f"pruner.percentile: {spec.pruner.percentile!r} must be between 0 and 100")
    if (spec.pruner.n_startup_trials or 0) < 0:
        raise SpecError(f"pruner.n_startup_trials: {spec.pruner.n_startup_trials!r} must be >= 0")
    if spec.pruner.min_resource < 1 or spec.pruner.reduction_factor < 2:
        raise SpecError(
            f"pruner: min_resource {spec.pruner.min_resource!r} must be >= 1 and reduction_factor "
            f"{spec.pruner.reduction_factor!r} >= 2"
        )


def _parse_enqueue(value: Any, spec: StudySpec) -> tuple[EnqueuedTrial, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SpecError(f"enqueue: {value!r} must be a list of {{label: ..., params: {{path: value}}}}")
    out = []
    for i, item in enumerate(value):
        where = f"enqueue[{i}]"
        if (
            not isinstance(item, dict)
            or set(item) - {"label", "params"}
            or not isinstance(item.get("params"), dict)
        ):
            raise SpecError(f"{where}: {item!r} must be a mapping with 'label' and 'params'")
        paths = {p.path for p in spec.space}
        for path, val in item["params"].items():
            if path not in paths:
                raise SpecError(
                    f"{where}.params.{path}: not a searched path; searched: {', '.join(sorted(paths))}"
                )
            param = spec.param(path)
            if not param.contains(val):
                allowed = (
                    list(param.choices) if param.kind == "categorical" else f"[{param.low}, {param.high}]"
                )
                raise SpecError(f"{where}.params.{path}: {val!r} is outside the space; allowed: {allowed}")
        out.append(EnqueuedTrial(label=str(item.get("label", f"baseline-{i}")), params=dict(item["params"])))
    return tuple(out)
