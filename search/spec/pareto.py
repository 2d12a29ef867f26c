"""A multi-objective study's Pareto front: the trials no other trial beats on every objective.

    make export NAME=transformer-cpu-speed PARETO=1   # exports/NAME.pareto-K.yaml, most accurate first
    make report NAME=transformer-cpu-speed            # the front as a plotly figure and a table

The front is this study's own: trials without a recorded config (a warm start's history) neither sit on
it nor push the study's trials off it, which `Study.best_trials` would do, and trials that break a
constraint (e.g. `decode.ms_per_formula <= 20`) are never on it.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search.spec.objectives import feasible


def sign(direction: StudyDirection) -> int:
    """+1 where larger is better."""
    return 1 if direction == StudyDirection.MAXIMIZE else -1


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The front, best first on the first objective (the accuracy metric that picks best.pt)."""
    signs = [sign(direction) for direction in study.directions]
    own = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "config" in t.user_attrs and feasible(t)
    ]
    front = [t for t in own if not any(_dominates(other, t, signs) for other in own)]
    return sorted(front, key=lambda t: (-signs[0] * t.values[0], t.number))


def _dominates(a: FrozenTrial, b: FrozenTrial, signs: list[int]) -> bool:
    """a is at least as good as b on every objective and better on one."""
    pairs = [(s * x, s * y) for s, x, y in zip(signs, a.values, b.values, strict=True)]
    return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)


def trade_off(study: optuna.Study, within: float = 1.0) -> dict[str, Any] | None:
    """The front's most accurate trial and, among front trials at most `within` points behind it on the
    first objective, the best one on the second: what a point of accuracy buys (e.g. decoding speed).
    `factor` is how many times better the pick is on the second objective (> 1 means better)."""
    front = pareto_trials(study)
    if len(study.directions) < 2 or not front:
        return None
    best = front[0]
    near = [t for t in front if abs(t.values[0] - best.values[0]) <= within]
    second = sign(study.directions[1])
    pick = max(near, key=lambda t: (second * t.values[1], -t.number))
    a, b = best.values[1], pick.values[1]
    factor = (b / a if second > 0 else a / b) if a and b else None
    return {"best": best, "pick": pick, "within": within, "factor": factor}
