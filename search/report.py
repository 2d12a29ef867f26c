"""A self-contained HTML report of a study: figures, top trials, importances, pruning statistics.

python -m search report transformer      # -> studies/reports/transformer.html
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import TrialState

from core.paths import reports_dir
from search.export import top_trials
from search.figures import figures_html, param_importances, study_figures

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
    top = top_trials(study, TOP_K)
    parts.append(f"<h2>top {len(top)} trials</h2>")
    params = sorted({k for t in top for k in t.params})
    rows = [
        [
            t.number,
            f"{t.value:.3f}",
            t.last_step,
            f"{(t.duration.total_seconds() if t.duration else 0):.0f}",
            *[t.params.get(p, "") for p in params],
        ]
        for t in top
    ]
    parts.append(_table(["trial", "score", "epochs", "seconds", *params], rows))
    importances = param_importances(study)
    parts.append("<h2>parameter importances</h2>")
    parts.append(
        _table(["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in importances.items()])
        if importances
        else "<p>needs at least two complete trials with differing parameters</p>"
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


def render_report(study: optuna.Study) -> str:
    figures, skipped = study_figures(study)
    return figures_html(figures, skipped, f"study {study.study_name}", _summary_html(study))


def write_report(study: optuna.Study, path: Path | None = None) -> Path:
    path = Path(path or reports_dir() / f"{study.study_name}.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(study), encoding="utf-8")
    return path
