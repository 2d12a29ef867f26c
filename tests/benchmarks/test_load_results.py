"""RESULTS.md's load block is written from the JSON and says when something did not add up."""

from __future__ import annotations

import copy
import json

import pytest

from benchmarks.load_results import BEGIN, END, block, clean, update_results_doc

ACCOUNTING = {
    "states": {"COMPLETE": 10, "PRUNED": 8, "FAIL": 2}, "fail_reasons": {"fails_on_purpose": 2},
    "over_budget_trials": 0, "counted_against_budget": 20, "budget_met_exactly": True,
    "duplicate_trial_numbers": 0, "numbers_contiguous": True, "enqueued_run_not_once": {},
    "running_at_end": 0,
    "mlflow_runs": 20, "mlflow_runs_without_trial": 0, "mlflow_runs_twice": 0, "trials_without_run": [],
    "mlflow_runs_still_running": 0,
}  # fmt: skip
SCENARIO = {
    "via": "direct", "workers": 16, "killed_workers": 4, "trials_budget": 20, "trials_per_s": 1.5,
    "overhead_s_per_trial": 3.25, "worker_cpu_s_per_trial": 1.1, "proxy_cpu_s_per_trial": 0.0,
    "pg_connections_peak": {"optuna": 32, "mlflow": 33, "total": 65}, "accounting": ACCOUNTING,
}  # fmt: skip
DOC = {"code_version": "abc1234", "machine": "a CPU", "date": "2026-12-07", "storage": "postgresql://x/test",
       "trainer": "sleeps", "every_trial_accounted": True, "scenarios": {"kill": SCENARIO}}  # fmt: skip


def test_a_clean_run_and_each_kind_of_fault():
    assert clean(ACCOUNTING)
    for key, bad in [("budget_met_exactly", False), ("running_at_end", 1), ("trials_without_run", [3]),
                     ("enqueued_run_not_once", {"a": 2}), ("mlflow_runs_twice", 1)]:  # fmt: skip
        assert not clean({**ACCOUNTING, key: bad}), key


def test_the_block_shows_the_figures_and_flags_a_scenario_that_did_not_add_up(tmp_path):
    text = block(DOC)
    assert "abc1234" in text and "16, 4 killed" in text and "32 + 33" in text and "| yes |" in text
    broken = copy.deepcopy(DOC)
    broken["scenarios"]["kill"]["accounting"]["running_at_end"] = 2
    assert "| **no** |" in block(broken)
    doc = tmp_path / "RESULTS.md"
    doc.write_text(f"# R\n\n{BEGIN}\nold\n{END}\n\nafter\n")
    assert update_results_doc(DOC, doc)
    written = doc.read_text()
    assert "old" not in written and "abc1234" in written and written.endswith("after\n")
    assert (
        not update_results_doc(DOC, tmp_path / "none.md") if (tmp_path / "none.md").write_text("x") else True
    )


@pytest.mark.slow
def test_a_small_load_run_with_a_killed_worker_accounts_for_every_trial(isolated_home, tmp_path, monkeypatch):
    """3 workers, 8 trials, one worker killed mid-study: the whole benchmark path, end to end."""
    import benchmarks.load_bench as load_bench
    from tests.search.test_workers import _postgres_url

    monkeypatch.setattr(load_bench, "STORAGE", _postgres_url())
    out = tmp_path / "load.json"
    argv = [
        "--workers",
        "3",
        "--trials",
        "8",
        "--epoch-seconds",
        "0.05",
        "--scenarios",
        "kill",
        "--out",
        str(out),
    ]
    assert load_bench.main(argv) == 0
    result = json.loads(out.read_text())["scenarios"]["kill"]
    assert result["killed_workers"] == 1 and result["worker_exit_codes"].get("-9") == 1
    assert clean(result["accounting"]) and result["accounting"]["counted_against_budget"] == 8
