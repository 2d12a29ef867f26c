"""Validation and test scoring: teacher-forced loss and token accuracy, then batched decoding and the metrics.

    python -m training evaluate --checkpoint runs/x/best.pt --data data/synth --split test

`evaluate(model, loader, ...)` is what the training loop calls every `eval_every` epochs and what the
`evaluate` command calls on a checkpoint; metric definitions are in `training.metrics`. References are the
dataset's own token lists (not the vocab-encoded targets), so an out-of-vocabulary token can never be
matched by a predicted `<UNK>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data_prep.vocab import PAD_ID, Vocab
from training.losses import count_tokens, token_loss_sum, trim_targets
from training.metrics import count_correct_tokens, score_corpus
from training.runtime import autocast, shutdown_loader_iterator


@dataclass
class Prediction:
    id: str
    reference: list[str]
    prediction: list[str]
    score: float


@dataclass
class EvalResult:
    # loss, token_accuracy, bleu4, exact_match, exprate_le1, exprate_le2, edit_score, avg_score, num_samples
    metrics: dict[str, float]
    predictions: list[Prediction] = field(default_factory=list)

    def samples(self, n: int) -> list[dict[str, str]]:
        """The first `n` rows as {"id", "reference", "prediction"} with space-joined tokens."""
        return [
            {"id": p.id, "reference": " ".join(p.reference), "prediction": " ".join(p.prediction)}
            for p in self.predictions[:n]
        ]


@torch.no_grad()
def decode_images(
    model: torch.nn.Module,
    images: torch.Tensor,
    *,
    method: str = "greedy",
    beam_width: int = 5,
    length_penalty: float = 0.0,
    max_len: int | None = None,
    memory: torch.Tensor | None = None,
):
    """models.decoding's DecodeResult for a batch (B,1,H,W) already on the model's device; `memory` is
    the batch's encoding when the caller has it."""
    from models.decoding import beam_search, greedy_decode

    if method == "beam":
        return beam_search(model, images, beam_width=beam_width, length_penalty=length_penalty,
                           max_len=max_len, memory=memory)
    if method != "greedy":
        raise ValueError(f"decode method {method!r} is not one of ['greedy', 'beam']")
    return greedy_decode(model, images, max_len=max_len, memory=memory)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: DataLoader,
    vocab: Vocab,
    *,
    device: torch.device,
    amp: bool | str = "auto",
    label_smoothing: float = 0.0,
    method: str = "greedy",
    beam_width: int = 5,
    length_penalty: float = 0.0,
    max_len: int | None = None,
    progress: bool = False,
    desc: str = "validate",
) -> EvalResult:
    dataset = loader.dataset
    if not getattr(dataset, "has_formulas", True):
        raise ValueError(f"split {getattr(dataset, 'split', '?')!r} has no formulas to score against")
    was_training = model.training
    model.eval()
    max_out = getattr(model.config, "max_output_len", None)
    loss_sum, n_tokens, correct, positions = 0.0, 0, 0, 0
    predictions: list[Prediction] = []
    bar = tqdm(total=len(loader), desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    iterator = iter(loader)
    try:
        for batch in iterator:
            images = batch.images.to(device, non_blocking=True)
            targets = trim_targets(batch.targets, max_out).to(device, non_blocking=True)
            with autocast(device, amp, model):
                # one encoder pass serves both the teacher-forced loss and the decoding
                memory = model.encode(images)
                logits = model.decode(memory, targets[:, :-1])  # (B, T-1, V)
                decoded = decode_images(model, images, method=method, beam_width=beam_width,
                                        length_penalty=length_penalty, max_len=max_len, memory=memory)
            loss_sum += float(token_loss_sum(logits, targets[:, 1:], label_smoothing))
            n_tokens += count_tokens(targets)
            hits, total = count_correct_tokens(logits, targets[:, 1:], pad_id=PAD_ID)
            correct, positions = correct + hits, positions + total
            rows = zip(batch.ids, batch.indices, decoded.sequences, decoded.scores, strict=True)
            for item_id, index, sequence, score in rows:
                predictions.append(Prediction(item_id, dataset.formula_tokens(index), vocab.decode(sequence),
                                              float(score)))
            bar.update(1)
    finally:
        shutdown_loader_iterator(iterator)
        iterator = None
        bar.close()
        model.train(was_training)
    scores = score_corpus([p.reference for p in predictions], [p.prediction for p in predictions])
    metrics = {
        "loss": loss_sum / max(1, n_tokens),
        "token_accuracy": 100.0 * correct / max(1, positions),
        **scores,
        "num_samples": float(len(predictions)),
    }
    return EvalResult(metrics, predictions)


__all__ = ["EvalResult", "Prediction", "decode_images", "evaluate"]
