"""benchmarks/RESULTS.md's search-results block: written from search_results.json between its markers, by
the bench and by `--render`, and never from a JSON older than the bench's design.

    python -m pytest tests/benchmarks/test_search_results_doc.py -q
"""

from __future__ import annotations

import json

from benchmarks.search_results import (
    RESULTS_BEGIN,
    RESULTS_DOC,
    RESULTS_END,
    render,
    summarise,
    targets,
    update_results_doc,
)
from core.paths import REPO_ROOT

BUDGET = 32
OLD_NOTE = "the note of an older run"


def _measured(val: float, test: float) -> dict:
    run = {"search_seed": 11, "best_val_avg": val, "epochs_consumed": BUDGET, "epochs_to_best": 8,
           "wall_s": 60.0, "trials": 4, "pruned": 1, "failed": 0, "best_trial": 2, "best_config": {},
           "selected_run_test_avg": test, "curve": [[8, val]]}  # fmt: skip
    return {"runs": [run], "tests": [{"test_seed": 1, "test_avg": test}]}


def _results() -> dict:
    strategies = {arm: summarise(arm, _measured(val, test), BUDGET)
                  for arm, val, test in (("random", 30.0, 28.0), ("tpe_hyperband", 40.0, 39.0))}  # fmt: skip
    return {"code_version": "abc1234", "machine": "a test CPU", "dataset_hash": "f" * 64,
            "spec": "transformer-cpu", "quick": False, "budget_epochs": BUDGET, "max_epochs": 8,
            "default_arm": "tpe_hyperband", "complete": True, "strategies": strategies,
            "targets": targets(strategies, BUDGET, "tpe_hyperband")}  # fmt: skip


def _doc(folder):
    doc = folder / "RESULTS.md"
    doc.write_text(f"# Results\n\nbefore\n\n{RESULTS_BEGIN}\n{OLD_NOTE}\n{RESULTS_END}\n\nafter\n")
    return doc


def test_the_block_is_rewritten_between_the_markers_and_nothing_else(tmp_path):
    doc = _doc(tmp_path)
    assert update_results_doc(_results(), doc)
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Results\n\nbefore\n\n") and text.endswith(f"{RESULTS_END}\n\nafter\n")
    block = text.split(RESULTS_BEGIN, 1)[1].split(RESULTS_END, 1)[0]
    assert "older run" not in block
    assert "Code `abc1234`" in block and "| tpe_hyperband (default) | 39.00 (1) |" in block
    assert "default beats random on test: +11.00 (needed +5): met" in block
    assert update_results_doc(_results(), doc) and doc.read_text(encoding="utf-8") == text  # idempotent


def test_a_doc_without_markers_or_a_json_older_than_the_design_is_left_alone(tmp_path):
    plain = tmp_path / "plain.md"
    plain.write_text("no markers here\n", encoding="utf-8")
    assert not update_results_doc(_results(), plain)
    assert plain.read_text(encoding="utf-8") == "no markers here\n"
    doc = _doc(tmp_path)
    before = doc.read_text(encoding="utf-8")
    older = {**_results(), "targets": {"beats_course_best_on_test": {}}}  # the committed 1f71984 JSON's shape
    assert not update_results_doc(older, doc)
    assert doc.read_text(encoding="utf-8") == before


def test_render_rewrites_the_html_and_the_block_from_the_json_alone(tmp_path):
    source = tmp_path / "search_results.json"
    source.write_text(json.dumps(_results()), encoding="utf-8")
    doc = _doc(tmp_path)
    assert render(source, doc) == [source.with_suffix(".html"), doc]
    assert "abc1234" in source.with_suffix(".html").read_text(encoding="utf-8")
    assert "Code `abc1234`" in doc.read_text(encoding="utf-8")
    (tmp_path / "quick").mkdir()
    untouched = _doc(tmp_path / "quick")
    assert render(source, None) == [source.with_suffix(".html")]  # a quick run's figures stay out of docs
    assert "older run" in untouched.read_text(encoding="utf-8")


def test_the_block_lives_in_results_md_not_in_the_readme():
    text = RESULTS_DOC.read_text(encoding="utf-8")
    assert RESULTS_DOC == REPO_ROOT / "benchmarks" / "RESULTS.md"
    assert text.count(RESULTS_BEGIN) == 1 and text.count(RESULTS_END) == 1
    assert text.index(RESULTS_BEGIN) < text.index(RESULTS_END)
    assert RESULTS_BEGIN not in (REPO_ROOT / "README.md").read_text(encoding="utf-8")
