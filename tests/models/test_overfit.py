"""Both families memorise 8 real im2latex formulas (a wiring check: loss, masks and decoding agree)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from data_prep.vocab import PAD_ID
from models import build_model, list_models
from models.decoding import greedy_decode

MAX_STEPS = 300
CHECK_EVERY = 20


@pytest.mark.slow  # ~5-12 s each on a loaded 2-core machine
@pytest.mark.parametrize("kind", list_models())
def test_overfits_a_batch_of_real_formulas(kind, real_batch, small_config):
    torch.manual_seed(0)
    batch = real_batch
    target_len = batch.targets.shape[1]
    model = build_model(small_config(kind, dropout=0.0, max_output_len=target_len), len(batch.vocab))
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    expected = [batch.vocab.encode(f) for f in batch.formulas]
    matches = 0
    for step in range(1, MAX_STEPS + 1):
        model.train()
        logits = model(batch.images, batch.targets[:, :-1])  # (B, T-1, V)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.targets[:, 1:].flatten(), ignore_index=PAD_ID)
        optim.zero_grad()
        loss.backward()
        optim.step()
        if step % CHECK_EVERY == 0:
            decoded = greedy_decode(model, batch.images).sequences
            matches = sum(d == e for d, e in zip(decoded, expected, strict=True))
            if matches == len(expected):
                break
    assert matches == len(expected), f"{kind}: {matches}/{len(expected)} exact after {MAX_STEPS} steps"
