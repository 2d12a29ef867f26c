"""benchmarks/search_results.json and .html: what `python -m benchmarks search` measured, and its targets.

The JSON's shape is a contract other tools read: code_version, dataset_hash, machine, budget_epochs,
default_arm, and `strategies` with one entry per strategy holding search_seeds, epochs_consumed_max (over
its seeds), best_val_avg_mean, best_val_avg_seeds, test_seeds, test_avg_mean, test_avg_seeds,
selected_run_test_avg, curve_mean (the mean best-so-far val avg against epochs, with curve_low/high, the
seeds' range) and best_config (the best val run's config), plus `runs` (every search seed's summary) and
`tests` (every retrain). Scores are 0-100.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from search.study.studies import code_version, dataset_hash

MARGIN = 5.0  # test points the harness default must gain over random search and over hand tuning
COLOURS = {
    "random": "#1f77b4",
    "tpe": "#ff7f0e",
    "tpe_hyperband": "#2ca02c",
    "hand_tuning": "#9467bd",
    "course_best": "#7f7f7f",
}
RUN_FIELDS = ("search_seed", "best_val_avg", "epochs_consumed", "epochs_to_best", "wall_s", "trials",
              "pruned", "failed", "best_trial", "selected_run_test_avg", "curve",
              "diverged_at_epoch")  # fmt: skip


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


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _spread(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def best_so_far(curve: list[list[Any]], epoch: int) -> float | None:
    """A run's best full-fidelity val avg once `epoch` epochs were consumed (its curve's step function)."""
    best = None
    for consumed, value in curve:
        if consumed > epoch:
            break
        best = value
    return best


def mean_curve(runs: list[dict[str, Any]], budget: int) -> dict[str, list[list[float]]]:
    """Mean, lowest and highest best-so-far over the seeds at every epoch where every seed has a best."""
    mean, low, high = [], [], []
    for epoch in range(1, budget + 1):
        values = [best_so_far(r.get("curve") or [], epoch) for r in runs]
        if runs and all(v is not None for v in values):
            mean.append([epoch, round(sum(values) / len(values), 3)])
            low.append([epoch, min(values)])
            high.append([epoch, max(values)])
    return {"curve_mean": mean, "curve_low": low, "curve_high": high}


def summarise(arm: str, measured: dict[str, Any], budget: int) -> dict[str, Any]:
    """One strategy's contract fields from its per-seed runs and its test retrains."""
    runs, tests = measured["runs"], measured["tests"]
    vals = [r["best_val_avg"] for r in runs if r.get("best_val_avg") is not None]
    scores = [t["test_avg"] for t in tests if t.get("test_avg") is not None]
    selected = [r["selected_run_test_avg"] for r in runs if r.get("selected_run_test_avg") is not None]
    best = max((r for r in runs if r.get("best_val_avg") is not None), key=lambda r: r["best_val_avg"],
               default={})  # fmt: skip
    return {
        "search_seeds": [r["search_seed"] for r in runs if r["search_seed"] is not None],
        "epochs_consumed_max": max((r["epochs_consumed"] for r in runs), default=0),
        "best_val_avg_mean": _mean(vals),
        "best_val_avg_spread": _spread(vals),
        "best_val_avg_seeds": vals,
        "test_seeds": [t["test_seed"] for t in tests],
        "test_avg_mean": _mean(scores),
        "test_avg_spread": _spread(scores),
        "test_avg_seeds": scores,
        "selected_run_test_avg": _mean(selected),
        **mean_curve(runs, budget),
        "best_config": best.get("best_config"),
        "trials": sum(r["trials"] for r in runs),
        "pruned": sum(r["pruned"] for r in runs),
        "failed": sum(r["failed"] for r in runs),
        "wall_s": round(sum(r["wall_s"] for r in runs), 1),
        "runs": [{k: r.get(k) for k in RUN_FIELDS} for r in runs],
        "tests": tests,
    }


def targets(strategies: dict[str, dict[str, Any]], budget: int, default_arm: str) -> dict[str, Any]:
    """The issue's targets, read from the strategies' figures: the default's test lead over random search
    and over equal-budget hand tuning, every arm within budget, and what the seeds say about pruning."""
    default = strategies.get(default_arm, {})
    out: dict[str, Any] = {
        "within_budget": {
            "budget_epochs": budget,
            "epochs_consumed_max": {k: s.get("epochs_consumed_max") for k, s in strategies.items()},
            "met": all((s.get("epochs_consumed_max") or 0) <= budget for s in strategies.values()),
        }
    }
    for rival in ("random", "hand_tuning"):
        mine, theirs = default.get("test_avg_mean"), strategies.get(rival, {}).get("test_avg_mean")
        if mine is not None and theirs is not None:
            out[f"default_beats_{rival}_on_test"] = {
                "gain": round(mine - theirs, 2), "needed": MARGIN, "met": mine - theirs >= MARGIN,
            }  # fmt: skip
    out["pruning"] = pruning_verdict(strategies.get("tpe", {}), strategies.get("tpe_hyperband", {}))
    return out


def pruning_verdict(tpe: dict[str, Any], hyperband: dict[str, Any]) -> dict[str, Any]:
    """Hyperband against no pruning (both TPE) on mean test avg, judged against the seeds' spread: a gap
    smaller than the larger of the two standard deviations is no evidence either way."""
    a, b = tpe.get("test_avg_mean"), hyperband.get("test_avg_mean")
    if a is None or b is None:
        return {"verdict": None, "why": "not both arms have test figures yet"}
    spreads = [s for s in (tpe.get("test_avg_spread"), hyperband.get("test_avg_spread")) if s is not None]
    noise = max(spreads) if spreads else 0.0
    gap = b - a
    if abs(gap) <= noise:
        verdict = "no difference within the seeds' spread"
    else:
        verdict = "hyperband" if gap > 0 else "no pruning"
    val_gap = _difference(hyperband.get("best_val_avg_mean"), tpe.get("best_val_avg_mean"))
    return {"hyperband_minus_tpe_test": round(gap, 2), "hyperband_minus_tpe_val": val_gap,
            "spread": round(noise, 2), "verdict": verdict}  # fmt: skip


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 2)


def write_results(
    plan: Any, measured: dict[str, dict[str, Any]], default_arm: str, *, complete: bool = True
) -> Path:
    strategies = {arm: summarise(arm, m, plan.budget_epochs) for arm, m in measured.items()}
    results = {
        "code_version": code_version(),
        "dataset_hash": dataset_hash(plan.spec.dataset),
        "machine": machine(),
        "spec": plan.spec.name,
        "quick": plan.quick,
        "budget_epochs": plan.budget_epochs,
        "max_epochs": plan.spec.budget.max_epochs,
        "default_arm": default_arm,
        "complete": complete,
        "strategies": strategies,
        "targets": targets(strategies, plan.budget_epochs, default_arm),
    }
    plan.out.mkdir(parents=True, exist_ok=True)
    path = plan.out / "search_results.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    path.with_suffix(".html").write_text(results_html(results), encoding="utf-8")
    if not plan.quick:
        update_results_doc(results)
    return path


def render(json_path: Path, doc: Path | None = None) -> list[Path]:
    """`--render`: the HTML again from the JSON alone, and `doc`'s results block when a doc is given;
    returns the files written."""
    results = json.loads(json_path.read_text(encoding="utf-8"))
    html = json_path.with_suffix(".html")
    html.write_text(results_html(results), encoding="utf-8")
    return [html, doc] if doc is not None and update_results_doc(results, doc) else [html]


def results_html(results: dict[str, Any]) -> str:
    """The mean best-so-far val avg against epochs with the seeds' range as a band, and every retrain's
    test avg with the strategy's mean; the tables and the targets below."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.62, 0.38],
        subplot_titles=(
            "best validation avg so far: mean over search seeds, band = their range",
            "test avg of retrains with unselected seeds (bar: mean)",
        ),
    )
    for name, s in results["strategies"].items():
        colour = COLOURS.get(name, "#333333")
        _band(fig, go, name, s, colour)
        seeds = s.get("test_avg_seeds") or []
        fig.add_trace(
            go.Scatter(x=[name] * len(seeds), y=seeds, mode="markers", marker={"color": colour, "size": 9},
                       name=f"{name} test", legendgroup=name, showlegend=False),
            row=1, col=2,
        )  # fmt: skip
        if s.get("test_avg_mean") is not None:
            fig.add_trace(
                go.Scatter(x=[name], y=[s["test_avg_mean"]], mode="markers", showlegend=False,
                           marker={"color": colour, "symbol": "line-ew-open", "size": 26}, legendgroup=name,
                           name=f"{name} mean"),
                row=1, col=2,
            )  # fmt: skip
    fig.update_xaxes(title_text="training epochs consumed", row=1, col=1)
    fig.update_yaxes(title_text="val avg score (0-100)", row=1, col=1)
    fig.update_yaxes(title_text="test avg score (0-100)", row=1, col=2)
    title = (
        f"search strategies on {results['spec']} ({'quick' if results['quick'] else 'full'} run, "
        f"{results['budget_epochs']} epochs per strategy and seed) - {results['code_version']}"
    )
    fig.update_layout(title=title, height=540, width=1250, template="plotly_white")
    # plotly.js (4.7 MB) from its CDN, not inlined: the committed file stays small; the tables and the
    # targets read without it
    html = fig.to_html(full_html=True, include_plotlyjs="cdn")
    return html.replace("</body>", _tables(results) + "</body>")


def _band(fig: Any, go: Any, name: str, s: dict[str, Any], colour: str) -> None:
    mean, low, high = (s.get(k) or [] for k in ("curve_mean", "curve_low", "curve_high"))
    if not mean:
        return
    if len(s.get("runs") or []) > 1:
        xs = [e for e, _ in high] + [e for e, _ in reversed(low)]
        ys = [v for _, v in high] + [v for _, v in reversed(low)]
        fig.add_trace(
            go.Scatter(x=xs, y=ys, fill="toself", fillcolor=colour, opacity=0.15, line={"width": 0},
                       line_shape="hv", legendgroup=name, showlegend=False, hoverinfo="skip"),
            row=1, col=1,
        )  # fmt: skip
    fig.add_trace(
        go.Scatter(x=[e for e, _ in mean], y=[v for _, v in mean], name=name, mode="lines", line_shape="hv",
                   line={"color": colour}, legendgroup=name),
        row=1, col=1,
    )  # fmt: skip


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    """The results table (the HTML's and RESULTS.md's): one row per strategy, figures from the JSON."""
    rows = []
    for name, s in results["strategies"].items():
        rows.append([
            name + (" (default)" if name == results.get("default_arm") else ""),
            _pm(s.get("test_avg_mean"), s.get("test_avg_spread"))
            + f" ({len(s.get('test_avg_seeds') or [])})",
            _pm(s.get("best_val_avg_mean"), s.get("best_val_avg_spread"))
            + f" ({len(s.get('best_val_avg_seeds') or [])})",
            _fmt(s.get("selected_run_test_avg")),
            str(s.get("epochs_consumed_max")),
            f"{s.get('trials')} / {s.get('pruned')}",
        ])  # fmt: skip
    return rows


TABLE_HEAD = ["strategy", "test avg, mean ± sd (retrains)", "best val avg, mean ± sd (seeds)",
              "selected run's test avg", "epochs (max over seeds)", "trials / pruned"]  # fmt: skip


RESULTS_DOC = Path(__file__).resolve().parent / "RESULTS.md"
RESULTS_BEGIN = "<!-- search-results: written by python -m benchmarks search from search_results.json -->"
RESULTS_END = "<!-- /search-results -->"


def results_block(results: dict[str, Any]) -> str:
    """RESULTS.md's table and verdicts for this bench, generated from the JSON (never typed in by hand)."""
    lines = [
        f"Code `{results['code_version']}`, {results['machine']}; dataset `{results['dataset_hash'][:12]}`; "
        f"{results['budget_epochs']} epochs per strategy and search seed"
        + ("" if results.get("complete", True) else " — **partial: the run is still going; figures so far**"),
        "",
        "| " + " | ".join(TABLE_HEAD) + " |",
        "|" + "---|" * len(TABLE_HEAD),
        *("| " + " | ".join(row) + " |" for row in table_rows(results)),
        "",
    ]
    t = results["targets"]
    for key in ("default_beats_random_on_test", "default_beats_hand_tuning_on_test"):
        if key in t:
            gain, needed, met = t[key]["gain"], t[key]["needed"], t[key]["met"]
            lines.append(f"- {key.replace('_', ' ')}: {gain:+.2f} (needed +{needed:.0f}): "
                         f"{'met' if met else 'not met'}")  # fmt: skip
    pruning = t.get("pruning", {})
    if pruning.get("verdict"):
        lines.append(f"- pruning (Hyperband minus no-pruning TPE, mean test avg): "
                     f"{pruning['hyperband_minus_tpe_test']:+.2f} against a seed spread of "
                     f"{pruning['spread']:.2f}: {pruning['verdict']}")  # fmt: skip
    lines.append(f"- no arm over budget: {'yes' if t['within_budget']['met'] else 'NO'}")
    return "\n".join(lines)


def update_results_doc(results: dict[str, Any], doc: Path = RESULTS_DOC) -> bool:
    """Rewrites the block between `doc`'s markers; False, writing nothing, when `doc` has no markers or the
    JSON predates this benchmark's design (no `within_budget` target: the committed JSON of the older runs,
    whose note the block keeps until a run of this design replaces it)."""
    text = doc.read_text(encoding="utf-8")
    older_json = "within_budget" not in results.get("targets", {})
    if RESULTS_BEGIN not in text or RESULTS_END not in text or older_json:
        return False
    head, rest = text.split(RESULTS_BEGIN, 1)
    _, tail = rest.split(RESULTS_END, 1)
    doc.write_text(f"{head}{RESULTS_BEGIN}\n{results_block(results)}\n{RESULTS_END}{tail}", encoding="utf-8")
    return True


def _tables(results: dict[str, Any]) -> str:
    head = "".join(f"<th>{h}</th>" for h in TABLE_HEAD)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in table_rows(results))
    return (
        f"<table border=1 cellpadding=4><tr>{head}</tr>{body}</table>"
        f"<pre>{json.dumps(results['targets'], indent=2)}</pre>"
        f"<p>{results['machine']}; dataset {results['dataset_hash']}</p>"
    )


def _pm(mean: float | None, spread: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" + ("" if spread is None else f" ± {spread:.2f}")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
