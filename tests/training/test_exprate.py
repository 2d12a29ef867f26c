"""ExpRate within k token errors (training.metrics.exprate_within) and where it is reported."""

from __future__ import annotations

import json

import pytest

from training.metrics import exact_match, exprate_within, score_corpus

REF = "\\frac { a } { b }".split()  # 7 tokens
# (prediction, its token Levenshtein distance to REF)
CASES = [
    (REF, 0),
    ("\\frac { a } { c }".split(), 1),  # substitution
    ("\\frac { a } { b } }".split(), 1),  # insertion
    ("\\frac { a { b }".split(), 1),  # deletion
    ("\\frac a } { b".split(), 2),  # two deletions
    ("\\frac { x } { b } ^ 2".split(), 3),  # a substitution and two insertions
    ([], 7),  # nothing predicted: every token deleted
    ("\\frac{a}{b}".split(), 7),  # one character-joined token: distance counts tokens, not characters
]


@pytest.mark.parametrize("k, expected_within", [(0, 1), (1, 4), (2, 5), (3, 6), (7, 8)])
def test_exprate_within_counts_samples_at_most_k_token_edits_away(k, expected_within):
    preds = [p for p, _ in CASES]
    refs = [REF] * len(preds)
    assert exprate_within(refs, preds, k) == pytest.approx(100.0 * expected_within / len(CASES))


@pytest.mark.parametrize("prediction, distance", CASES)
def test_each_case_is_within_exactly_its_distance(prediction, distance):
    assert exprate_within([REF], [prediction], distance) == 100.0
    if distance > 0:
        assert exprate_within([REF], [prediction], distance - 1) == 0.0


def test_k_zero_is_exact_match():
    refs = [REF, ["x"], [], ["a", "b"]]
    preds = [REF, ["y"], [], ["b", "a"]]
    assert exprate_within(refs, preds, 0) == exact_match(refs, preds) == pytest.approx(50.0)


def test_exprate_within_rejects_mismatched_lengths_and_a_negative_k():
    with pytest.raises(ValueError, match="2 references but 1 predictions"):
        exprate_within([REF, REF], [REF], 1)
    with pytest.raises(ValueError, match="k=-1"):
        exprate_within([REF], [REF], -1)
    assert exprate_within([], [], 1) == 0.0


def test_score_corpus_reports_exprates_outside_the_average():
    refs = [REF] * 4
    preds = [CASES[0][0], CASES[1][0], CASES[4][0], CASES[5][0]]  # distances 0, 1, 2, 3
    scores = score_corpus(refs, preds)
    assert scores["exact_match"] == 25.0
    assert scores["exprate_le1"] == 50.0 and scores["exprate_le2"] == 75.0
    # the study objective is still the mean of BLEU-4, exact match and edit score only
    assert scores["avg_score"] == pytest.approx((scores["bleu4"] + 25.0 + scores["edit_score"]) / 3)


def test_a_validated_epoch_records_the_exprates_beside_exact_match(overfit_data, tmp_path):
    from tests.training._helpers import Recorder, tiny_config
    from training.checkpoint import load_checkpoint
    from training.config import load_train_config
    from training.loop import train

    recorder = Recorder()
    result = train(load_train_config(tiny_config(overfit_data, trainer={"epochs": 1})), tmp_path / "run",
                   callbacks=[recorder])
    (_, metrics), = recorder.epochs  # what callbacks (MlflowRun: metric names as keys) receive
    assert metrics["val/exact_match"] <= metrics["val/exprate_le1"] <= metrics["val/exprate_le2"] <= 100
    assert {"val/exprate_le1", "val/exprate_le2"} <= set(load_checkpoint(result.best_checkpoint)["metrics"])


def test_evaluate_command_prints_and_writes_the_three_exprates(overfit_data, tmp_path, capsys):
    """The CLI's JSON (stdout and --out) holds ExpRate, <=1 and <=2; stderr sums them up on one line."""
    from tests.training._helpers import tiny_config
    from training.cli import main
    from training.config import load_train_config
    from training.loop import train

    run = train(load_train_config(tiny_config(overfit_data, trainer={"epochs": 1})), tmp_path / "run")
    capsys.readouterr()
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(run.best_checkpoint), "--data", str(overfit_data),
                 "--split", "validate", "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    printed, written = json.loads(captured.out), json.loads(out.read_text())
    assert printed == written
    assert written["exact_match"] <= written["exprate_le1"] <= written["exprate_le2"] <= 100
    assert written["exprate_le2"] == pytest.approx(run.best_metrics["val/exprate_le2"])
    summary = (f"ExpRate {written['exact_match']:.2f} %, <=1 error {written['exprate_le1']:.2f} %, "
               f"<=2 errors {written['exprate_le2']:.2f} % (8 validate samples)")
    assert summary in captured.err
