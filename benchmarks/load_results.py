"""RESULTS.md's block for the load benchmark, written from benchmarks/load_results.json (never by hand).

python -m benchmarks load --render    # rewrite the block from the committed JSON
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS_DOC = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN = "<!-- load-results: written by python -m benchmarks load from load_results.json -->"
END = "<!-- /load-results -->"
HEAD = ["scenario", "workers", "trials (budget)", "trials/s", "overhead s/trial (wall)", "worker CPU s/trial",
        "PG connections (Optuna + MLflow)", "states", "RUNNING at end", "MLflow runs / trials without one",
        "all counted"]  # fmt: skip


def row(name: str, r: dict[str, Any]) -> list[str]:
    a = r["accounting"]
    states = ", ".join(f"{n} {k.lower()}" for k, n in sorted(a["states"].items()))
    reasons = ", ".join(f"{n} {k}" for k, n in sorted(a["fail_reasons"].items()))
    if a.get("over_budget_trials"):
        reasons += f"; {a['over_budget_trials']} over_budget (not counted)"
    kills = f", {r['killed_workers']} killed" if r["killed_workers"] else ""
    pg = r["pg_connections_peak"]
    return [
        f"{name} ({r['via']}, `{r.get('code_version', '?')}`)",  # scenarios may come from separate runs
        f"{r['workers']}{kills}",
        f"{a['counted_against_budget']} ({r['trials_budget']})",
        f"{r['trials_per_s']:.2f}",
        f"{r['overhead_s_per_trial']:.2f}",
        _cpu(r),
        f"{pg['optuna']} + {pg['mlflow']}",
        f"{states} ({reasons})" if reasons else states,
        str(a["running_at_end"]),
        f"{a['mlflow_runs']} / {len(a['trials_without_run'])}",
        "yes" if clean(a) else "**no**",
    ]


def _cpu(r: dict[str, Any]) -> str:
    if "worker_cpu_s_per_trial" not in r:
        return "-"
    proxy = r.get("proxy_cpu_s_per_trial") or 0.0
    return f"{r['worker_cpu_s_per_trial']:.2f}" + (f" (+{proxy:.2f} proxy)" if proxy else "")


def clean(a: dict[str, Any]) -> bool:
    """Every trial accounted for: the budget met exactly, no number twice, every enqueued config run once,
    nothing RUNNING, MLflow runs one-to-one with the trials that started."""
    return (
        a["budget_met_exactly"]
        and not a["duplicate_trial_numbers"]
        and a["numbers_contiguous"]
        and not a["enqueued_run_not_once"]
        and a["running_at_end"] == 0
        and not a["trials_without_run"]
        and a["mlflow_runs_without_trial"] == 0
        and a["mlflow_runs_twice"] == 0
        and a["mlflow_runs_still_running"] == 0
    )


def block(doc: dict[str, Any]) -> str:
    lines = [
        f"Last written by code `{doc['code_version']}` (each scenario names its own), {doc['machine']}, "
        f"{doc['date']}; storage {doc['storage']}; "
        f"trainer: {doc['trainer']}.",
        "",
        "| " + " | ".join(HEAD) + " |",
        "|" + "---|" * len(HEAD),
        *("| " + " | ".join(row(name, r)) + " |" for name, r in doc["scenarios"].items()),
        "",
    ]
    if "overhead_ratio_n_vs_1" in doc:
        lines.append(f"- harness overhead per trial, {_workers(doc)} workers against 1: "
                     f"×{doc['overhead_ratio_n_vs_1']}")  # fmt: skip
    if "cpu_per_trial_ratio_n_vs_1" in doc:
        lines.append(
            f"- worker CPU per trial, {_workers(doc)} workers against 1: ×{doc['cpu_per_trial_ratio_n_vs_1']}"
        )
    if "optuna_connections_saved_by_proxy" in doc:
        lines.append(
            f"- Optuna connections the proxy saved at peak: {doc['optuna_connections_saved_by_proxy']}"
        )
    lines.append(
        f"- every trial accounted for in every scenario: {'yes' if doc['every_trial_accounted'] else 'NO'}"
    )
    return "\n".join(lines)


def _workers(doc: dict[str, Any]) -> int:
    return max(r["workers"] for r in doc["scenarios"].values())


def update_results_doc(doc: dict[str, Any], path: Path = RESULTS_DOC) -> bool:
    """Rewrites the block between the markers; False (nothing written) when the markers are missing."""
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return False
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{BEGIN}\n{block(doc)}\n{END}{tail}", encoding="utf-8")
    return True


def render(out: Path) -> int:
    doc = json.loads(out.read_text())
    if not update_results_doc(doc):
        print(f"{RESULTS_DOC} has no load-results markers; nothing written")
        return 1
    print(f"wrote the load benchmark's block in {RESULTS_DOC} from {out}")
    return 0
