"""Transformer decoder layers with an incremental (KV-cache) path, on `F.scaled_dot_product_attention`.

`nn.TransformerDecoder` recomputes every earlier position for each new token; here a step feeds one token
and reads the keys/values of earlier tokens from a buffer in `DecodeState.carried`, so a decode of T
tokens costs O(T) layer passes instead of O(T^2). Cross-attention keys/values of the encoder memory are
projected once per decode (`project_memory`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from models.base import DecodeState

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class Attention(nn.Module):
    """Multi-head attention; self-attention projects q, k, v in one matmul, cross-attention k, v once."""

    def __init__(self, d_model: int, nhead: int, dropout: float, is_self: bool):
        super().__init__()
        self.nhead = nhead
        self.dropout = dropout
        self.in_proj = nn.Linear(d_model, (3 if is_self else 1) * d_model)
        self.kv = None if is_self else nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def _heads(self, x: Tensor) -> Tensor:
        b, t, e = x.shape
        return x.view(b, t, self.nhead, e // self.nhead).transpose(1, 2)  # (B, H, T, Dh)

    def project(self, x: Tensor) -> list[Tensor]:
        """Self: [q, k, v]; cross: [q]; each (B, H, T, Dh)."""
        return [self._heads(p) for p in self.in_proj(x).chunk(3 if self.kv is None else 1, dim=-1)]

    def project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention keys and values of the encoder memory, (B, H, S, Dh) each."""
        k, v = self.kv(source).chunk(2, dim=-1)  # (B, S, E) each
        return self._heads(k), self._heads(v)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
        k, v = k.to(q.dtype), v.to(q.dtype)
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=causal)  # (B, H, T, Dh)
        return self.out(y.transpose(1, 2).flatten(2))  # (B, T, E)


class DecoderLayer(nn.Module):
    """Self-attention, cross-attention, feed-forward; post-norm (the reference's) or pre-norm."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int,
        dropout: float,
        norm_first: bool,
        activation: str,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = Attention(d_model, nhead, dropout, is_self=True)
        self.cross_attn = Attention(d_model, nhead, dropout, is_self=False)
        self.ff = nn.Sequential(
            nn.Linear(d_model, dim_feedforward),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            nn.Linear(dim_feedforward, d_model),
        )
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3))
        self.drops = nn.ModuleList(nn.Dropout(dropout) for _ in range(3))

    def _self_block(self, x: Tensor, cache: tuple[DecodeState, str] | None, step: int) -> Tensor:
        q, k, v = self.self_attn.project(x)  # (B, H, T, Dh) each
        if cache is None:
            return self.self_attn.attend(q, k, v, causal=True)
        state, name = cache
        if f"{name}.k" not in state.carried:
            b, h, _, dh = k.shape
            for key in (f"{name}.k", f"{name}.v"):
                state.carried[key] = k.new_empty(b, h, state.capacity, dh)
                state.time_dims[key] = 2
        k_buf, v_buf = state.carried[f"{name}.k"], state.carried[f"{name}.v"]
        k_buf[:, :, step : step + 1] = k
        v_buf[:, :, step : step + 1] = v
        state.length = step + 1
        # one query at the newest position sees every cached key, so no mask is needed
        return self.self_attn.attend(q, k_buf[:, :, : step + 1], v_buf[:, :, : step + 1], causal=False)

    def forward(
        self,
        x: Tensor,
        memory_kv: tuple[Tensor, Tensor],
        cache: tuple[DecodeState, str] | None = None,
        step: int = 0,
    ) -> Tensor:
        """x (B,T,E); with `cache`, T must be 1 and x sits at position `step`."""
        blocks = (
            lambda h: self._self_block(h, cache, step),
            lambda h: self.cross_attn.attend(*self.cross_attn.project(h), *memory_kv, causal=False),
            self.ff,
        )
        for block, norm, drop in zip(blocks, self.norms, self.drops, strict=True):
            if self.norm_first:
                x = x + drop(block(norm(x)))
            else:
                x = norm(x + drop(block(x)))
        return x
