"""Token cross-entropy for teacher-forced sequences: sums over non-<PAD> positions, normalised by the caller.

    from training.losses import token_loss_sum, trim_targets

Summing and dividing by the effective batch's token count (instead of averaging each micro-batch) makes a
step with gradient accumulation equal to the step on the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from data_prep.vocab import PAD_ID


def trim_targets(targets: torch.Tensor, max_output_len: int | None = None) -> torch.Tensor:
    """Drop all-<PAD> trailing columns and keep at most `max_output_len` decoder inputs (+1 for the shift)."""
    if targets.numel() == 0:
        return targets
    longest = int((targets != PAD_ID).sum(dim=1).max())
    if max_output_len is not None:
        longest = min(longest, max_output_len + 1)
    return targets[:, :longest]  # (B, T')


def count_tokens(targets: torch.Tensor) -> int:
    """Predicted positions of `targets` [SOS, ..., EOS, PAD...]: every non-PAD token after SOS."""
    return int((targets[:, 1:] != PAD_ID).sum())


def token_loss_sum(logits: torch.Tensor, tgt_out: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed cross-entropy over non-<PAD> positions; logits (B,T,V) (any dtype), tgt_out (B,T)."""
    return F.cross_entropy(
        logits.flatten(0, 1).float(),  # (B*T, V): the loss in fp32 even under bf16 autocast
        tgt_out.flatten(),  # (B*T,)
        ignore_index=PAD_ID,
        label_smoothing=label_smoothing,
        reduction="sum",
    )


__all__ = ["count_tokens", "token_loss_sum", "trim_targets"]
