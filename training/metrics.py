"""The scores every run records, defined once (docs/DATASETS.md copies this docstring).

    python -c "from training.metrics import score_corpus; print(score_corpus([['x']], [['x']]))"

All scores are on **tokens** (the space-separated LaTeX tokens of `formulas.norm.lst`), 0-100, over the
whole evaluated split:

- **BLEU-4** (`bleu4`): corpus-level BLEU with uniform weights (1/4 each for 1- to 4-gram precisions),
  clipped n-gram counts summed over the corpus, the brevity penalty `exp(1 - R/C)` when the total candidate
  length C is below the total reference length R, one reference per sample and no smoothing: the same
  number as multi-bleu.perl and NLTK `corpus_bleu`. Computed with sacrebleu (`tokenize="none"`,
  `smooth_method="none"`). If some n-gram order has no match at all the score is 0.
- **Exact match** (`exact_match`): % of samples whose predicted token sequence equals the reference: the
  ExpRate of handwritten-math papers (CROHME).
- **ExpRate ≤1, ≤2** (`exprate_le1`, `exprate_le2`): % of samples at most 1 (2) token edits (insertion,
  deletion or substitution: the token Levenshtein distance) from the reference; CROHME's "≤1 error" and
  "≤2 errors" columns. Reported beside the others, not part of the average.
- **Edit score** (`edit_score`): `100 * (1 - sum_i Lev(ref_i, pred_i) / sum_i max(len(ref_i), len(pred_i)))`,
  Levenshtein distance over tokens (im2markup's corpus-level edit score; rapidfuzz computes it). Empty
  reference and prediction together count as a perfect match.
- **Average score** (`avg_score`): the mean of the three above; the objective a study maximises.
- **Token accuracy** (`token_accuracy`): % of non-`<PAD>` target positions (including `<EOS>`) where the
  teacher-forced argmax equals the target.
- **Validation loss** (`loss`): token-mean cross-entropy (with the run's label smoothing) ignoring `<PAD>`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from rapidfuzz.distance import Levenshtein
from sacrebleu.metrics import BLEU

_BLEU = BLEU(tokenize="none", smooth_method="none", max_ngram_order=4, effective_order=False)

Tokens = Sequence[str]


def _check_lengths(references: Sequence[Tokens], predictions: Sequence[Tokens]) -> None:
    if len(references) != len(predictions):
        raise ValueError(
            f"{len(references)} references but {len(predictions)} predictions: pass one per sample"
        )


def corpus_bleu4(references: Sequence[Tokens], predictions: Sequence[Tokens]) -> float:
    _check_lengths(references, predictions)
    if not references:
        return 0.0
    hyps = [" ".join(p) for p in predictions]
    refs = [[" ".join(r) for r in references]]
    return float(_BLEU.corpus_score(hyps, refs).score)


def exact_match(references: Sequence[Tokens], predictions: Sequence[Tokens]) -> float:
    _check_lengths(references, predictions)
    if not references:
        return 0.0
    same = sum(list(r) == list(p) for r, p in zip(references, predictions, strict=True))
    return 100.0 * same / len(references)


def edit_score(references: Sequence[Tokens], predictions: Sequence[Tokens]) -> float:
    _check_lengths(references, predictions)
    pairs = list(zip(references, predictions, strict=True))
    distance = sum(Levenshtein.distance(list(r), list(p)) for r, p in pairs)
    total = sum(max(len(r), len(p)) for r, p in pairs)
    if total == 0:
        return 100.0 if references else 0.0
    return 100.0 * (1.0 - distance / total)


def exprate_within(references: Sequence[Tokens], predictions: Sequence[Tokens], k: int) -> float:
    """% of samples whose token Levenshtein distance to the reference is at most `k` (k=0: exact match)."""
    _check_lengths(references, predictions)
    if k < 0:
        raise ValueError(f"exprate_within: k={k}, an edit count must be >= 0")
    if not references:
        return 0.0
    # score_cutoff stops each distance at k + 1: a long wrong prediction costs no more than a near miss
    within = sum(
        Levenshtein.distance(list(r), list(p), score_cutoff=k) <= k
        for r, p in zip(references, predictions, strict=True)
    )
    return 100.0 * within / len(references)


def score_corpus(references: Sequence[Tokens], predictions: Sequence[Tokens]) -> dict[str, float]:
    """{'bleu4', 'exact_match', 'exprate_le1', 'exprate_le2', 'edit_score', 'avg_score'}, 0-100."""
    scores = {
        "bleu4": corpus_bleu4(references, predictions),
        "exact_match": exact_match(references, predictions),
        "exprate_le1": exprate_within(references, predictions, 1),
        "exprate_le2": exprate_within(references, predictions, 2),
        "edit_score": edit_score(references, predictions),
    }
    # a study's objective: its definition must not move when reported figures are added
    scores["avg_score"] = (scores["bleu4"] + scores["exact_match"] + scores["edit_score"]) / 3.0
    return scores


def count_correct_tokens(logits: torch.Tensor, targets: torch.Tensor, pad_id: int) -> tuple[int, int]:
    """(correct, total) teacher-forced argmax hits over non-PAD positions; logits (B,T,V), targets (B,T)."""
    mask = targets != pad_id
    hits = (logits.argmax(dim=-1) == targets) & mask
    return int(hits.sum()), int(mask.sum())


__all__ = ["corpus_bleu4", "exact_match", "exprate_within", "edit_score", "score_corpus",
           "count_correct_tokens"]
