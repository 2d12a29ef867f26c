"""Warm start: a new study begins with what earlier studies learned instead of cold random trials.

    warm_start: {from: [transformer-cpu, "postgresql://user@host/db#transformer"], top: 3}

`from` names studies: a bare name is a study in this study's own storage (by default its
studies/<NAME>.journal); a storage URL or a .journal path takes every study stored there (but this one),
or only `#study`. When the study is first created, every finished trial of those studies (COMPLETE or
PRUNED) whose parameters fit this study's space is added to its history with `Study.add_trials` and
this space's distributions, so TPE models it from the first trial on. A trial with a parameter this space
does not search, a value outside its range, or without one of its unconditional parameters is skipped and
counted, as is every trial of a study that optimises other metrics. The best `top` added configs are
enqueued to run first.

Added trials carry the user attr `warm_start_from` ("<study>#<number>"), have no config and no MLflow
run: they never count against the budget, are never this study's best or exported, and the report lists
them. The study's user attr `warm_start` records what it was warmed from and how many were added/skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search.spec import pareto
from search.spec.constraints import SpecError
from search.spec.objectives import parse_objective
from search.study.storage import create_storage, journal_path

FROM_ATTR = "warm_start_from"  # on an added trial: "<study>#<number>"
TOP_ATTR = "warm_start_top"  # on an enqueued config: the added trial it copies
STUDY_ATTR = "warm_start"  # on the study: its provenance


def is_foreign(trial: FrozenTrial) -> bool:
    return FROM_ATTR in trial.user_attrs


def distribution(param: Any) -> BaseDistribution:  # a ParamSpec, as space._suggest asks for it
    if param.kind == "categorical":
        return CategoricalDistribution(list(param.choices))
    if param.kind == "int":
        return IntDistribution(param.low, param.high, step=param.step or 1, log=param.log)
    return FloatDistribution(param.low, param.high, step=param.step, log=param.log)


def source_studies(source: str, own_name: str, own_storage: str | None) -> list[optuna.Study]:
    """The studies one `from` entry names (see the module docstring); a missing one is a SpecError."""
    location, _, only = source.partition("#")
    if "://" not in location and not location.endswith(".journal"):  # a study name in our storage
        if own_storage is None and not journal_path(location).exists():
            raise SpecError(
                f"warm_start.from: no study {location!r} ({journal_path(location)} does not exist)"
            )
        names, storage = [location], create_storage(location, own_storage)
    else:
        if location.endswith(".journal") and not Path(location).exists():
            raise SpecError(f"warm_start.from: {location} does not exist")
        storage = create_storage(only or own_name, location)
        names = [only] if only else [n for n in optuna.get_all_study_names(storage) if n != own_name]
    studies = []
    for name in names:
        try:
            studies.append(optuna.load_study(study_name=name, storage=storage))
        except KeyError:
            raise SpecError(f"warm_start.from: no study {name!r} in {source}") from None
    return studies


def _objective_of(study: optuna.Study) -> tuple[tuple[str, ...], tuple[StudyDirection, ...]]:
    names = study.metric_names
    if not names:  # studies from before metric names were recorded: their spec says
        spec = json.loads(study.user_attrs.get("spec_data") or "{}")
        names = list(parse_objective(spec.get("objective")).metrics)
    return tuple(names), tuple(study.directions)


def _misfit(trial: FrozenTrial, space: dict[str, Any]) -> str | None:
    """Why `trial` cannot join a study over `space` (path -> ParamSpec), or None."""
    if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
        return "not finished"
    if is_foreign(trial):
        return "itself warm-started"  # its source is named directly or not at all: no double counting
    for path, value in trial.params.items():
        if path not in space:
            return "a parameter this space does not search"
        if not space[path].contains(value):
            return "a value outside this space"
    if any(not p.when and path not in trial.params for path, p in space.items()):
        return "misses a parameter this space searches"
    return None


def _copy(trial: FrozenTrial, source: str, space: dict[str, Any]) -> FrozenTrial:
    return optuna.trial.create_trial(
        state=trial.state,
        params=dict(trial.params),
        distributions={path: distribution(space[path]) for path in trial.params},
        values=trial.values if trial.state == TrialState.COMPLETE else None,
        intermediate_values=dict(trial.intermediate_values),
        user_attrs={FROM_ATTR: f"{source}#{trial.number}"},
    )


def resolve_sources(spec: Any, storage_url: str | None) -> list[optuna.Study]:
    """Every study the spec's warm start names; called before the new study is created, so a wrong name
    is a one-line error that leaves no empty study behind."""
    return [s for source in spec.warm_start.sources for s in source_studies(source, spec.name, storage_url)]


def warm_start(study: optuna.Study, spec: Any, sources: list[optuna.Study]) -> dict[str, Any]:
    """Add the fitting trials of `sources` to a new study's history and enqueue the best `top`; returns the
    provenance, also recorded on the study."""
    space = {p.path: p for p in spec.space}
    want = (tuple(spec.objective.metrics), tuple(study.directions))
    added: list[FrozenTrial] = []
    skipped: Counter[str] = Counter()
    for other in sources:
        trials = other.get_trials(deepcopy=False)
        if _objective_of(other) != want:
            skipped[f"optimises {', '.join(_objective_of(other)[0])}"] += len(trials)
            continue
        for trial in trials:
            why = _misfit(trial, space)
            try:
                copy = None if why else _copy(trial, other.study_name, space)
            except ValueError:  # e.g. off this space's step grid
                why = "a value outside this space"
            if why:
                skipped[why] += 1
            else:
                added.append(copy)
    study.add_trials(added)
    enqueued = _enqueue_best(study, added, spec.warm_start.top)
    provenance = {
        "from": list(spec.warm_start.sources),
        "studies": [other.study_name for other in sources],
        "added": len(added),
        "skipped": sum(skipped.values()),
        "skipped_why": dict(skipped),
        "enqueued": enqueued,
    }
    study.set_user_attr(STUDY_ATTR, provenance)
    return provenance


def _enqueue_best(study: optuna.Study, added: list[FrozenTrial], top: int) -> list[str]:
    sign = pareto.sign(study.directions[0])
    complete = sorted((t for t in added if t.state == TrialState.COMPLETE), key=lambda t: -sign * t.values[0])
    enqueued, seen = [], []
    for trial in complete:
        if len(enqueued) == top:
            break
        if trial.params not in seen:  # two studies may hold the same config
            seen.append(trial.params)
            study.enqueue_trial(trial.params, user_attrs={TOP_ATTR: trial.user_attrs[FROM_ATTR]})
            enqueued.append(trial.user_attrs[FROM_ATTR])
    return enqueued


def describe(provenance: dict[str, Any]) -> str:
    why = ", ".join(f"{n} {reason}" for reason, n in provenance["skipped_why"].items())
    top = f"; the best {len(provenance['enqueued'])} run first" if provenance["enqueued"] else ""
    return (
        f"warm start: {provenance['added']} trial(s) from {', '.join(provenance['studies'])} added to the "
        f"history ({provenance['skipped']} skipped{': ' + why if why else ''}){top}"
    )
