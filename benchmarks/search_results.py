"""benchmarks/search_results.json and .html: what `python -m benchmarks search` measured, and its targets.

The JSON's shape is a contract other tools read: code_version, dataset_hash, machine, budget_epochs and
`strategies` with one entry per strategy (best_val_avg, test_avg_mean, test_avg_seeds, epochs_consumed,
epochs_to_best, wall_s, trials, pruned, failed, trials_per_hour, best_config). Scores are 0-100.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from search.studies import code_version, dataset_hash

COURSE_MARGIN = 5.0  # test points the harness default must gain over the course's hand-tuned best
VAL_TOLERANCE = 1.0  # Hyperband's best may trail no-pruning TPE's by this many val points...
EPOCH_FRACTION = 0.35  # ...having spent at most this share of the epochs TPE needed to reach its best
COLOURS = {
    "course_best": "#7f7f7f",
    "reference_default": "#bcbd22",
    "random": "#1f77b4",
    "tpe": "#ff7f0e",
    "tpe_hyperband": "#2ca02c",
}


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    threads = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores, {threads} torch threads{gpu}; torch {torch.__version__}"


def epochs_to_reach(curve: list[list[Any]], value: float) -> int | None:
    """Epochs consumed when the best-so-far first reached `value` (None: never)."""
    return next((epochs for epochs, best in curve if best is not None and best >= value), None)


def hyperband_floor_epochs(spec: Any) -> int | None:
    """The fewest epochs after which the bench's Hyperband arm can hold a config it proposed itself at
    full fidelity: its `sampler.n_startup_trials` random trials come complete (copied from the random arm,
    the same draws), then its first own proposal completes. Before that, its best can only be one of
    those shared random draws. None when the spec sets no epoch count."""
    epochs = spec.budget.max_epochs
    return None if epochs is None else (spec.sampler.n_startup_trials + 1) * epochs


def targets(
    strategies: dict[str, dict[str, Any]], floor_epochs: int | None = None
) -> dict[str, dict[str, Any]]:
    """The issue's three targets, read from the strategies' figures; `floor_epochs` (hyperband_floor_epochs)
    adds the best fraction the bench's Hyperband arm could score on the epoch target."""
    hb, tpe, rnd, course = (strategies.get(k, {}) for k in ("tpe_hyperband", "tpe", "random", "course_best"))
    out: dict[str, dict[str, Any]] = {}
    if hb.get("test_avg_mean") is not None and course.get("test_avg_mean") is not None:
        gain = hb["test_avg_mean"] - course["test_avg_mean"]
        out["beats_course_best_on_test"] = {
            "gain": round(gain, 2),
            "needed": COURSE_MARGIN,
            "met": gain >= COURSE_MARGIN,
        }
    if hb.get("best_val_avg") is not None and tpe.get("best_val_avg") is not None:
        reach = epochs_to_reach(hb["curve"], tpe["best_val_avg"] - VAL_TOLERANCE)
        allowed = EPOCH_FRACTION * tpe["epochs_to_best"]
        out["pruning_saves_epochs"] = {
            "hyperband_epochs_to_within_1": reach,
            "tpe_epochs_to_best": tpe["epochs_to_best"],
            "fraction": None if reach is None else round(reach / max(1, tpe["epochs_to_best"]), 3),
            "needed_fraction": EPOCH_FRACTION,
            "met": reach is not None and reach <= allowed,
        }
        if floor_epochs is not None:
            out["pruning_saves_epochs"].update({
                "floor_epochs": floor_epochs,
                "floor_fraction": round(floor_epochs / max(1, tpe["epochs_to_best"]), 3),
            })
    if hb.get("best_val_avg") is not None and rnd.get("best_val_avg") is not None:
        out["beats_random_on_val"] = {
            "hyperband": hb["best_val_avg"],
            "random": rnd["best_val_avg"],
            "met": hb["best_val_avg"] >= rnd["best_val_avg"],
        }
    return out


def write_results(plan: Any, strategies: dict[str, dict[str, Any]]) -> Path:
    results = {
        "code_version": code_version(),
        "dataset_hash": dataset_hash(plan.spec.dataset),
        "machine": machine(),
        "spec": plan.spec.name,
        "quick": plan.quick,
        "budget_epochs": plan.budget_epochs,
        "max_epochs": plan.spec.budget.max_epochs,
        "strategies": strategies,
        "targets": targets(strategies, hyperband_floor_epochs(plan.spec)),
    }
    plan.out.mkdir(parents=True, exist_ok=True)
    path = plan.out / "search_results.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    path.with_suffix(".html").write_text(results_html(results), encoding="utf-8")
    return path


def results_html(results: dict[str, Any]) -> str:
    """Best-so-far val avg against epochs consumed, and the retrained test scores (both seeds)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.62, 0.38],
        subplot_titles=(
            "best validation avg so far (full-fidelity trials)",
            "test avg of the retrained best (2 seeds)",
        ),
    )
    for name, s in results["strategies"].items():
        colour = COLOURS.get(name)
        points = [(e, b) for e, b in s.get("curve", []) if b is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    name=name,
                    mode="lines+markers",
                    line_shape="hv",
                    line={"color": colour},
                    legendgroup=name,
                ),
                row=1,
                col=1,
            )
        seeds = s.get("test_avg_seeds") or []
        fig.add_trace(
            go.Scatter(
                x=[name] * len(seeds),
                y=seeds,
                mode="markers",
                marker={"color": colour, "size": 10},
                name=f"{name} seeds",
                legendgroup=name,
                showlegend=False,
            ),
            row=1,
            col=2,
        )
        if s.get("test_avg_mean") is not None:
            fig.add_trace(
                go.Scatter(
                    x=[name],
                    y=[s["test_avg_mean"]],
                    mode="markers",
                    showlegend=False,
                    marker={"color": colour, "symbol": "line-ew-open", "size": 24},
                    legendgroup=name,
                    name=f"{name} mean",
                ),
                row=1,
                col=2,
            )
    fig.update_xaxes(title_text="training epochs consumed", row=1, col=1)
    fig.update_yaxes(title_text="val avg score (0-100)", row=1, col=1)
    fig.update_yaxes(title_text="test avg score (0-100)", row=1, col=2)
    title = (
        f"search strategies on {results['spec']} ({'quick' if results['quick'] else 'full'} run, "
        f"{results['budget_epochs']} epochs each) - {results['code_version']}"
    )
    fig.update_layout(title=title, height=520, width=1200, template="plotly_white")
    rows = "".join(
        f"<tr><td>{k}</td><td>{_fmt(s.get('test_avg_mean'))}</td><td>{_fmt(s.get('best_val_avg'))}</td>"
        f"<td>{s.get('epochs_consumed')}</td><td>{s.get('epochs_to_best')}</td><td>{s.get('trials')}</td>"
        f"<td>{s.get('pruned')}</td><td>{_fmt(s.get('trials_per_hour'))}</td></tr>"
        for k, s in results["strategies"].items()
    )
    table = (
        "<table border=1 cellpadding=4><tr><th>strategy</th><th>test avg (mean of 2 seeds)</th><th>best val"
        "</th><th>epochs</th><th>epochs to best</th><th>trials</th><th>pruned</th><th>trials/hour</th></tr>"
        f"{rows}</table><pre>{json.dumps(results['targets'], indent=2)}</pre>"
        f"<p>{results['machine']}; dataset {results['dataset_hash']}</p>"
    )
    # plotly.js (4.7 MB) from its CDN, not inlined: the committed file stays small; the table and the
    # targets read without it
    return fig.to_html(full_html=True, include_plotlyjs="cdn").replace("</body>", table + "</body>")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
