"""The step tapes defer the gradients of what every decoder step shares; values and gradients must equal
plain autograd's, including steps whose output no loss uses and tensors also used outside the steps."""

from __future__ import annotations

import pytest
import torch

from models import step_tapes


def _recurrence(taped: bool, keys, memory, weight, out_weight, bias, x0, skip_last_loss: bool):
    """A small input-fed loop shaped like model 1's decoder: matmul, attention, feedback."""
    keys_in, memory_in = keys * 1.5, memory + 0.25  # non-leaf inputs, as the model's are
    if taped:
        attend = step_tapes.AttentionTape(keys_in, memory_in).attend
        step, out = step_tapes.MatmulTape(weight).addmm, step_tapes.MatmulTape(out_weight).addmm
    else:
        attend = lambda q: step_tapes.plain_attention(q, keys_in, memory_in)  # noqa: E731
        step = lambda b, x: torch.addmm(b, x, weight)  # noqa: E731
        out = lambda b, x: x.mm(out_weight)  # noqa: E731
    x, loss, steps = x0, 0.0, 5
    for t in range(steps):
        q = torch.tanh(step(bias, x))
        context = attend(q)
        x = torch.tanh(out(None, context)) + 0.1 * x  # no bias, as model 1's combine layer
        if not (skip_last_loss and t == steps - 1):
            loss = loss + (context * (t + 1)).square().mean()
    # the keys and the weight also used outside the steps: their gradients must add up
    return loss + keys_in.mean() + weight.sum() * 0.01


@pytest.mark.parametrize("skip_last_loss", [False, True])
def test_tapes_give_autograds_values_and_gradients(skip_last_loss):
    torch.manual_seed(0)
    b, s, h, m = 3, 7, 6, 8
    leaves = {
        "keys": torch.randn(b, s, h), "memory": torch.randn(b, s, m), "weight": torch.randn(5, h) * 0.5,
        "out_weight": torch.randn(m, 5) * 0.3,
        "bias": torch.randn(b, h), "x0": torch.randn(b, 5),
    }  # fmt: skip
    results = []
    for taped in (False, True):
        params = {k: v.clone().requires_grad_() for k, v in leaves.items()}
        loss = _recurrence(taped, **params, skip_last_loss=skip_last_loss)
        loss.backward()
        results.append((loss.detach(), {k: p.grad for k, p in params.items()}))
    (plain_loss, plain), (taped_loss, taped) = results
    torch.testing.assert_close(taped_loss, plain_loss)
    for name in leaves:
        torch.testing.assert_close(taped[name], plain[name], rtol=1e-5, atol=1e-5, msg=name)


def test_tapes_stay_off_without_gradients_or_under_autocast():
    x = torch.randn(2, 3, requires_grad=True)
    assert step_tapes.teacher_forcing_tapes(x)
    assert not step_tapes.teacher_forcing_tapes(x.detach())
    with torch.no_grad():
        assert not step_tapes.teacher_forcing_tapes(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not step_tapes.teacher_forcing_tapes(x)
