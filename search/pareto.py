"""A multi-objective study's Pareto front: the trials no other trial beats on every objective.

    make export NAME=transformer-cpu-speed PARETO=1   # exports/NAME.pareto-K.yaml, most accurate first
    make report NAME=transformer-cpu-speed            # the front as a plotly figure and a table

Trials that break a constraint (e.g. `decode.ms_per_formula <= 20`) are never on the front (Optuna's
`Study.best_trials` leaves them out), and neither is a trial without a recorded config.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial


def sign(direction: StudyDirection) -> int:
    """+1 where larger is better."""
    return 1 if direction == StudyDirection.MAXIMIZE else -1


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The front, best first on the first objective (the accuracy metric that picks best.pt)."""
    first = sign(study.directions[0])
    front = [t for t in study.best_trials if "config" in t.user_attrs]
    return sorted(front, key=lambda t: (-first * t.values[0], t.number))


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
