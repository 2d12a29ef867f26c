"""The search benchmark's equal-budget hand-tuning arm: what a careful person does with the searches' epochs.

They start from the course's hand-tuned config (studies/transformer.yaml, `course-best`), place it in the
CPU profile by a written rule, and spend the budget on a learning-rate sweep, the knob a person tunes
first. The rule, per searched parameter of the profile:

- a value the profile allows is kept (the course's stage blocks, heads, optimizer, dropout up to the
  profile's cap, augmentation);
- a number outside the profile's range is clipped into it and snapped to its step (dropout 0.5 -> 0.3);
  a number the profile offers as choices goes to the nearest choice (cut after stage 4 -> 3, batch 16 ->
  32);
- a name the profile does not offer goes to the choice that contains it (multistep -> warmup_multistep:
  the same schedule shape with the profile's short warmup), else to the first choice;
- a parameter the course does not set takes the profile's lowest value (the least intervention: a
  0.5-epoch warmup);
- `optim.lr` is the sweep's: budget / max_epochs points, evenly spaced on a log scale over the
  profile's learning-rate range, highest first (a person tries the fast end before the slow one).

Parameters outside the profile's space keep the profile's base values (its stage 3 stays ResNet-18).
"""

from __future__ import annotations

import math
from typing import Any

from search.spec.parse import ParamSpec, StudySpec, load_spec

COURSE_SPEC, COURSE_LABEL = "transformer", "course-best"
LR_PATH = "optim.lr"


def course_params() -> dict[str, Any]:
    return dict(next(e for e in load_spec(COURSE_SPEC).enqueue if e.label == COURSE_LABEL).params)


def place_in_profile(params: dict[str, Any], spec: StudySpec) -> dict[str, Any]:
    """`params` mapped into `spec`'s space by the rule above (every searched parameter gets a value, a
    conditional one only when its condition holds)."""
    placed: dict[str, Any] = {}
    for dim in spec.space:  # parents come before the parameters conditioned on them
        if any(placed.get(parent) not in allowed for parent, allowed in dim.when.items()):
            continue
        placed[dim.path] = _placed_value(dim, params[dim.path]) if dim.path in params else _lowest(dim)
    return placed


def lr_sweep(spec: StudySpec, budget_epochs: int) -> list[float]:
    """The learning rates the budget holds at full fidelity, highest first."""
    dim = next(d for d in spec.space if d.path == LR_PATH)
    n = max(1, budget_epochs // (spec.budget.max_epochs or 1))
    if n == 1:
        return [math.sqrt(dim.low * dim.high)]
    ratio = (dim.high / dim.low) ** (1 / (n - 1))
    return [float(f"{dim.high / ratio**i:.3g}") for i in range(n)]


def hand_tuning_trials(spec: StudySpec, budget_epochs: int) -> list[dict[str, Any]]:
    """The arm's enqueued trials: the placed course config with each learning rate of the sweep."""
    base = place_in_profile(course_params(), spec)
    sweep = lr_sweep(spec, budget_epochs)
    return [{"label": f"hand-lr-{lr:g}", "params": {**base, LR_PATH: lr}} for lr in sweep]


def _placed_value(dim: ParamSpec, value: Any) -> Any:
    if dim.contains(value):
        return value
    if dim.kind == "categorical":
        options = list(dim.choices.values())
        numeric = [o for o in options if isinstance(o, (int, float)) and not isinstance(o, bool)]
        if isinstance(value, (int, float)) and numeric:
            return min(numeric, key=lambda o: (abs(o - value), o))
        named = [o for o in options if isinstance(o, str) and isinstance(value, str) and value in o]
        return named[0] if named else options[0]
    clipped = min(max(value, dim.low), dim.high)
    if dim.step:
        clipped = dim.low + round((clipped - dim.low) / dim.step) * dim.step
    return int(clipped) if dim.kind == "int" else float(f"{clipped:.6g}")


def _lowest(dim: ParamSpec) -> Any:
    if dim.kind == "categorical":
        return next(iter(dim.choices.values()))
    return int(dim.low) if dim.kind == "int" else dim.low
