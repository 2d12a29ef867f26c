"""The metric definitions, checked against hand computations and a from-scratch corpus BLEU."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from training.metrics import corpus_bleu4, count_correct_tokens, edit_score, exact_match, score_corpus


def _ngrams(tokens, n):
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def first_principles_bleu(references, hypotheses):
    """Papineni et al. 2002 corpus BLEU-4, as multi-bleu.perl computes it (one reference each)."""
    log_precision = 0.0
    for n in range(1, 5):
        pairs = zip(references, hypotheses, strict=True)
        matched = sum(sum((_ngrams(h, n) & _ngrams(r, n)).values()) for r, h in pairs)
        total = sum(max(0, len(h) - n + 1) for h in hypotheses)
        if matched == 0:
            return 0.0
        log_precision += math.log(matched / total) / 4
    ref_len, hyp_len = sum(map(len, references)), sum(map(len, hypotheses))
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return 100 * brevity * math.exp(log_precision)


REFS = [
    "\\frac { a } { b } + c".split(),
    "x ^ { 2 } + y ^ { 2 } = z ^ { 2 }".split(),
    "\\alpha _ { i } \\beta".split(),
]
HYPS = [
    "\\frac { a } { b } + d".split(),  # one substitution
    "x ^ { 2 } + y ^ 2 = z ^ { 2 }".split(),  # braces dropped: shorter
    "\\alpha _ { i }".split(),  # truncated
]


def test_identical_corpus_scores_100():
    scores = score_corpus(REFS, REFS)
    assert scores == pytest.approx({"bleu4": 100, "exact_match": 100, "exprate_le1": 100, "exprate_le2": 100,
                                    "edit_score": 100, "avg_score": 100})


def test_bleu_matches_first_principles_corpus_computation():
    expected = first_principles_bleu(REFS, HYPS)
    assert 0 < expected < 100
    assert corpus_bleu4(REFS, HYPS) == pytest.approx(expected, abs=1e-9)


def test_bleu_is_corpus_level_not_a_mean_of_sentence_scores():
    per_sentence = [first_principles_bleu([r], [h]) for r, h in zip(REFS, HYPS, strict=True)]
    assert corpus_bleu4(REFS, HYPS) != pytest.approx(sum(per_sentence) / len(per_sentence), abs=1e-3)


def test_bleu_applies_the_brevity_penalty():
    ref = ["a b c d e f g h".split()]
    short = ["a b c d e f".split()]  # every n-gram matches, but 6 < 8 tokens
    assert corpus_bleu4(ref, short) == pytest.approx(100 * math.exp(1 - 8 / 6))


def test_known_partial_case_by_hand():
    refs = [["a", "b", "c", "d"], ["e", "f"]]
    preds = [["a", "x", "c"], ["e", "f"]]
    # Levenshtein: b->x and a deleted d = 2; denominators max(4,3) + max(2,2) = 6
    assert edit_score(refs, preds) == pytest.approx(100 * (1 - 2 / 6))
    assert exact_match(refs, preds) == pytest.approx(50.0)
    scores = score_corpus(refs, preds)
    assert scores["avg_score"] == pytest.approx((scores["bleu4"] + 50.0 + 100 * (1 - 2 / 6)) / 3)


def test_edit_score_counts_tokens_not_characters():
    # one token differs; a character-level distance would count 6 edits
    assert edit_score([["\\alpha", "x"]], [["\\beta", "x"]]) == pytest.approx(50.0)


def test_empty_prediction_scores_zero():
    scores = score_corpus([["a", "b", "c"]], [[]])
    # three deletions: beyond even two errors
    assert scores == pytest.approx({"bleu4": 0, "exact_match": 0, "exprate_le1": 0, "exprate_le2": 0,
                                    "edit_score": 0, "avg_score": 0})


def test_empty_reference_and_prediction_count_as_an_edit_match():
    assert edit_score([[]], [[]]) == 100.0
    assert exact_match([[]], [[]]) == 100.0


def test_length_mismatch_between_references_and_predictions_raises():
    with pytest.raises(ValueError, match="2 references but 1 predictions"):
        score_corpus([["a"], ["b"]], [["a"]])


def test_token_accuracy_ignores_padding():
    targets = torch.tensor([[5, 6, 2, 0], [7, 2, 0, 0]])  # (B, T) with PAD = 0
    logits = torch.full((2, 4, 10), -5.0)
    for b, row in enumerate([[5, 9, 2, 0], [7, 2, 3, 3]]):  # one wrong real token; pads predicted anything
        for t, tok in enumerate(row):
            logits[b, t, tok] = 5.0
    assert count_correct_tokens(logits, targets, pad_id=0) == (4, 5)
