"""A self-contained HTML report of a study: figures, top trials, importances, pruning statistics.

python -m search report transformer      # -> studies/reports/transformer.html
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from core.paths import reports_dir
from search.results.export import top_trials
from search.results.figures import MIN_TRIALS_FOR_IMPORTANCE, figures_html, param_importances, study_figures
from search.spec.objectives import EPOCH_VALUES_ATTR
from search.spec.pareto import pareto_trials, trade_off
from search.study.warm_start import FROM_ATTR, is_foreign
from search.study.warm_start import STUDY_ATTR as WARM_ATTR
from search.study.warm_start import describe as describe_warm_start

TOP_K = 10


def _cell(value: object) -> str:
    # sampled floats such as 0.00044363698639134574 read better as 0.0004436
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    cells = ("".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) for row in rows)
    body = "".join(f"<tr>{row}</tr>" for row in cells)
    return f"<table><tr>{head}</tr>{body}</table>"


def pruning_statistics(study: optuna.Study) -> dict[str, Counter]:
    trials = study.get_trials(deepcopy=False)
    return {
        "states": Counter(t.state.name for t in trials),
        "reasons": Counter(
            t.user_attrs.get("reason", "pruner") for t in trials if t.state == TrialState.PRUNED
        ),
        "epochs": Counter(
            t.last_step for t in trials if t.state == TrialState.PRUNED and t.last_step is not None
        ),
    }


def _summary_html(study: optuna.Study) -> str:
    attrs = study.user_attrs
    parts = [
        _table(
            ["study", "dataset hash", "code version", "trials"],
            [
                [
                    study.study_name,
                    attrs.get("dataset_hash", "?"),
                    attrs.get("code_version", "?"),
                    len(study.trials),
                ]
            ],
        )
    ]
    if study.user_attrs.get(WARM_ATTR):
        parts.append(_warm_start_html(study))
    if len(study.directions) > 1:
        parts.append(_front_html(study))
    top = top_trials(study, TOP_K)
    parts.append(f"<h2>top {len(top)} trials</h2>")
    parts.append(_trials_table(study, top))
    broken = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("constraint_broken")]
    if broken:
        which = "; ".join(f"#{t.number}: {', '.join(t.user_attrs['constraint_broken'])}" for t in broken)
        parts.append(
            f"<p>{len(broken)} complete trial(s) broke a constraint judged after training and are left out "
            f"of the top, the front and export: {html.escape(which)}</p>"
        )
    importances = param_importances(study)
    parts.append("<h2>parameter importances</h2>")
    parts.append(
        _table(["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in importances.items()])
        if importances
        else f"<p>too few finished trials to rank parameters: {_complete(study)} complete; importances need "
        f"at least {MIN_TRIALS_FOR_IMPORTANCE} with differing parameters (over fewer, the ranking is "
        "noise)</p>"
    )
    stats = pruning_statistics(study)
    parts.append("<h2>pruning statistics</h2>")
    parts.append(_table(["state", "trials"], sorted(stats["states"].items())))
    parts.append(
        "<p>pruned trials by reason</p>" + _table(["reason", "trials"], sorted(stats["reasons"].items()))
    )
    parts.append(
        "<p>pruned trials by the last epoch they reported</p>"
        + _table(["epoch", "trials"], sorted(stats["epochs"].items()))
    )
    return "\n".join(parts)


def _trials_table(study: optuna.Study, trials: list[FrozenTrial]) -> str:
    n = len(study.directions)
    names = ["score"] if n == 1 else study.metric_names or [f"objective {i}" for i in range(n)]
    params = sorted({k for t in trials for k in t.params})
    rows = [
        [
            t.number,
            *[f"{v:.3f}" for v in t.values],
            t.last_step or len(t.user_attrs.get(EPOCH_VALUES_ATTR, ())),
            f"{(t.duration.total_seconds() if t.duration else 0):.0f}",
            *[t.params.get(p, "") for p in params],
        ]
        for t in trials
    ]
    return _table(["trial", *names, "epochs", "seconds", *params], rows)


def _warm_start_html(study: optuna.Study) -> str:
    """What the study was warmed from, and its foreign trials (history only: no config, no run)."""
    foreign = [t for t in study.get_trials(deepcopy=False) if is_foreign(t)]
    rows = [
        [t.number, t.user_attrs[FROM_ATTR], t.state.name, ", ".join(f"{v:.3f}" for v in t.values or ())]
        for t in foreign
    ]
    what = html.escape(describe_warm_start(study.user_attrs[WARM_ATTR]))
    return (
        f"<h2>warm start</h2><p>{what}. These trials are history for the sampler only: they were not "
        "trained in this study, count against no budget and are never its best or exported.</p>"
        + _table(["trial", "from", "state", "value"], rows)
    )


def _front_html(study: optuna.Study) -> str:
    front = pareto_trials(study)
    parts = [f"<h2>Pareto front ({len(front)} trials, most accurate first)</h2>", _trials_table(study, front)]
    deal = trade_off(study)
    if deal is not None and deal["pick"].number != deal["best"].number and deal["factor"]:
        names = study.metric_names or ["objective 0", "objective 1"]
        best, pick = deal["best"], deal["pick"]
        parts.append(
            html.escape(
                f"Within {deal['within']:g} point of the most accurate trial (#{best.number}, "
                f"{names[0]} {best.values[0]:.2f}), trial #{pick.number} ({pick.values[0]:.2f}) is "
                f"{deal['factor']:.2f}x better on {names[1]} ({best.values[1]:.3g} -> {pick.values[1]:.3g})."
            ).join(("<p>", "</p>"))
        )
    return "\n".join(parts)


def render_report(study: optuna.Study) -> str:
    figures, skipped = study_figures(study)
    return figures_html(figures, skipped, f"study {study.study_name}", _summary_html(study))


def write_report(study: optuna.Study, path: Path | None = None) -> Path:
    path = Path(path or reports_dir() / f"{study.study_name}.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(study), encoding="utf-8")
    return path


def _complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
