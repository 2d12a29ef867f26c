"""The decoders' hand-written step paths compute what the modules they bypass compute.

The Transformer's `DecoderLayer.step` and model 1's unrolled LSTM cell are written as bare functional
calls for speed; these tests hold them to the module arithmetic (`DecoderLayer.forward`, `nn.LSTM`) they
stand in for, in values and in gradients, so a later edit cannot drift from it unnoticed.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import CNNRNNConfig, ResNetTransformerConfig, build_model
from models.transformer_layers import DecoderLayer

VOCAB = 40


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_layer_step_equals_its_full_forward_position_by_position(norm_first):
    torch.manual_seed(0)
    layer = DecoderLayer(32, 4, 64, 0.1, norm_first, "gelu").eval()
    x, memory = torch.randn(3, 7, 32), torch.randn(3, 11, 32)
    memory_kv = tuple(t.contiguous() for t in layer.cross_attn.project_kv(memory))
    with torch.no_grad():
        full = layer(x, memory_kv)  # causal: position t sees 0..t
        cache = (torch.zeros(3, 4, 7, 8), torch.zeros(3, 4, 7, 8))
        steps = torch.stack([layer.step(x[:, t], memory_kv, cache, t) for t in range(7)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-5)


def _module_lstm_decode(model, memory: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
    """Model 1's teacher-forced decode as it was written before the unrolled cell: nn.LSTM one step at a
    time on [embedding, fed-back output], the head applied at every step."""
    c = model.config
    state = model.init_decode_state(memory, tgt_in.shape[1])
    h, cell, feed = state.carried["h"], state.carried["c"], state.carried["feed"]
    keys, logits = state.shared["keys"], []
    for t in range(tgt_in.shape[1]):
        x = torch.cat((model.embed(tgt_in[:, t]), feed), dim=-1)
        hx = (h.transpose(0, 1).contiguous(), cell.transpose(0, 1).contiguous())  # (L, B, Hd) each
        out, (h_n, c_n) = model.lstm(x[:, None], hx)
        query = out[:, 0]
        weights = torch.softmax(torch.bmm(keys, query[:, :, None])[:, :, 0], dim=-1)
        context = torch.bmm(weights[:, None], memory)[:, 0]
        feed = torch.tanh(model.combine(torch.cat((query, context), dim=-1)))
        h, cell = h_n.transpose(0, 1), c_n.transpose(0, 1)
        logits.append(model.head(feed))
    assert c.dropout == 0.0  # the reference leaves dropout out; so must the model under test
    return torch.stack(logits, dim=1)


@pytest.mark.parametrize("layers", [1, 2])
def test_rnn_unrolled_cell_matches_nn_lstm_in_values_and_gradients(layers):
    torch.manual_seed(0)
    config = CNNRNNConfig(
        cnn_channels=[8, 16], cnn_pools=["2x2", "2x2"], encoder_hidden=8, embed_dim=6,
        decoder_hidden=12, decoder_layers=layers, dropout=0.0,
    )  # fmt: skip
    model = build_model(config, VOCAB).train()
    memory = torch.randn(3, 10, 16, requires_grad=True)
    tgt_in = torch.randint(3, VOCAB, (3, 9))

    fast = model.decode(memory, tgt_in)
    fast_grads = torch.autograd.grad(fast.square().sum(), [memory, *model.parameters()], allow_unused=True)
    slow = _module_lstm_decode(model, memory, tgt_in)
    slow_grads = torch.autograd.grad(slow.square().sum(), [memory, *model.parameters()], allow_unused=True)

    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    for (name, _), a, b in zip(
        [("memory", None), *model.named_parameters()], fast_grads, slow_grads, strict=True
    ):
        if b is None:  # the encoder's parameters: not on this path
            assert a is None, name
            continue
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_rnn_decode_step_equals_teacher_forcing_at_every_step():
    torch.manual_seed(1)
    config = CNNRNNConfig(cnn_channels=[8, 16], cnn_pools=["2x2", "2x2"], encoder_hidden=8, embed_dim=6,
                          decoder_hidden=12)  # fmt: skip
    model = build_model(config, VOCAB).eval()
    memory, tgt_in = torch.randn(2, 10, 16), torch.randint(3, VOCAB, (2, 6))
    with torch.no_grad():
        forced = model.decode(memory, tgt_in)
        state = model.init_decode_state(memory, 6)
        stepped = torch.stack([model.decode_step(state, tgt_in[:, t], t) for t in range(6)], dim=1)
    torch.testing.assert_close(stepped, forced, rtol=1e-5, atol=1e-6)


def test_transformer_incremental_logits_equal_teacher_forcing():
    torch.manual_seed(2)
    config = ResNetTransformerConfig(d_model=32, nhead=4, num_layers=2, dim_feedforward=64)
    model = build_model(config, VOCAB).eval()
    images = torch.rand(2, 1, 32, 96)
    tgt_in = torch.randint(3, VOCAB, (2, 8))
    with torch.no_grad():
        memory = model.encode(images)
        forced = F.log_softmax(model.decode(memory, tgt_in), dim=-1)
        state = model.init_decode_state(memory, 8)
        stepped = torch.stack([model.decode_step(state, tgt_in[:, t], t) for t in range(8)], dim=1)
    torch.testing.assert_close(F.log_softmax(stepped, dim=-1), forced, rtol=1e-4, atol=1e-5)
