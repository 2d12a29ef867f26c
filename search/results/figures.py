"""The study's plotly figures (optuna.visualization), shared by the MLflow parent run and the report.

    python -m search report smoke        # renders every figure below into studies/reports/smoke.html

Figures that need a model of the objective (importances, parallel coordinate, slice, contour) need at
least two complete trials; they are left out, with the reason, until then.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import optuna
import plotly.offline
from optuna import visualization as vis
from optuna.trial import TrialState

log = logging.getLogger(__name__)

TOP_PARAMS = 3  # the contour plot pairs the most important parameters only
# fANOVA fits a forest to the complete trials: over two points it still ranks (optim.lr 0.479 from two
# trials read as a finding), so below this many it says there are too few instead
MIN_TRIALS_FOR_IMPORTANCE = 10


def first_objective(study: optuna.Study) -> dict[str, Any]:
    """The `target`/`target_name` that point optuna.visualization at a multi-objective study's first
    metric (the accuracy one); {} for a single objective."""
    if len(study.directions) < 2:
        return {}
    name = (study.metric_names or ["objective 0"])[0]
    return {"target": lambda t: t.values[0], "target_name": name}


def param_importances(study: optuna.Study) -> dict[str, float]:
    """fANOVA importances of the params over complete trials ({} when they cannot be computed or there
    are fewer than MIN_TRIALS_FOR_IMPORTANCE); of the first metric for a multi-objective study."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}
    target = first_objective(study).get("target")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study, target=target))
    except (ValueError, RuntimeError) as exc:  # e.g. every complete trial had the same params
        log.info("parameter importances unavailable: %s", exc)
        return {}


def study_figures(study: optuna.Study) -> tuple[dict[str, Any], dict[str, str]]:
    """(title -> plotly Figure, title -> why it was skipped)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    figures: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    importances = param_importances(study)
    top = list(importances)[:TOP_PARAMS]
    first = first_objective(study)
    enough = MIN_TRIALS_FOR_IMPORTANCE
    plots = [
        ("optimization history", 1, lambda: vis.plot_optimization_history(study, **first)),
        ("intermediate values", 0, lambda: vis.plot_intermediate_values(study)),
        ("parameter importances", enough, lambda: vis.plot_param_importances(study, **first)),
        ("parallel coordinate", 2, lambda: vis.plot_parallel_coordinate(study, **first)),
        ("slice", 2, lambda: vis.plot_slice(study, **first)),
        ("contour of the top parameters", 2, lambda: vis.plot_contour(study, params=top, **first)),
        ("timeline", 0, lambda: vis.plot_timeline(study)),
    ]
    if first:  # a multi-objective study: its front comes first; it has no intermediate values
        plots = [("Pareto front", 1, lambda: vis.plot_pareto_front(study)), *plots[:1], *plots[2:]]
    for title, needs, make in plots:
        if len(complete) < needs:
            skipped[title] = f"needs {needs} complete trials, the study has {len(complete)}"
            continue
        if title.startswith("contour") and len(top) < 2:
            skipped[title] = "needs two parameters with computable importances"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figures[title] = make()
        except Exception as exc:  # one figure that cannot be drawn must not cost the others
            skipped[title] = f"{type(exc).__name__}: {exc}"
    return figures, skipped


def figures_html(figures: dict[str, Any], skipped: dict[str, str], title: str, body_prefix: str = "") -> str:
    """One self-contained HTML page: plotly.js inlined once, then every figure."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{title}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}</style>",
        f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script>",
        f"</head><body><h1>{title}</h1>",
        body_prefix,
    ]
    for name, fig in figures.items():
        parts.append(f"<h2>{name}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
    if skipped:
        parts.append("<h2>figures not drawn</h2><ul>")
        parts.extend(f"<li>{name}: {why}</li>" for name, why in skipped.items())
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
