"""Transformer decoder layers with an incremental (KV-cache) path, on `F.scaled_dot_product_attention`.

`nn.TransformerDecoder` recomputes every earlier position for each new token; here `DecoderLayer.step`
feeds one token and reads the keys/values of earlier tokens from a preallocated buffer, so a decode of T
tokens costs O(T) layer passes instead of O(T^2). Cross-attention keys/values of the encoder memory are
projected once per decode (`Attention.project_kv`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

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

    def forward(self, x: Tensor, memory_kv: tuple[Tensor, Tensor]) -> Tensor:
        """Every position at once (training, and full-recompute decoding): x (B,T,E) -> (B,T,E)."""
        blocks = (
            lambda h: self.self_attn.attend(*self.self_attn.project(h), causal=True),
            lambda h: self.cross_attn.attend(*self.cross_attn.project(h), *memory_kv, causal=False),
            self.ff,
        )
        for block, norm, drop in zip(blocks, self.norms, self.drops, strict=True):
            if self.norm_first:
                x = x + drop(block(norm(x)))
            else:
                x = norm(x + drop(block(x)))
        return x

    def step(self, x: Tensor, memory_kv: tuple[Tensor, ...], cache: tuple[Tensor, ...], t: int) -> Tensor:
        """One new position `t` in eval mode: x (B,E) -> (B,E); writes its key/value into `cache`
        ((B,H,capacity,Dh) each, filled up to t) and attends over positions 0..t.

        The same arithmetic as `forward` at one position, written as bare functional calls: at batch 16
        a step's matrices are tiny, so its time was module calls, view/transpose bookkeeping and the
        residual/norm wrappers rather than multiply-adds (2.7 ms a step against ~1 ms of kernels). Dropout is
        off in eval mode, so it is left out."""
        sa, ca = self.self_attn, self.cross_attn
        b, heads = x.shape[0], sa.nhead
        k_cache, v_cache = cache
        n1, n2, n3 = self.norms

        def norm(layer: nn.LayerNorm, y: Tensor) -> Tensor:
            return F.layer_norm(y, layer.normalized_shape, layer.weight, layer.bias, layer.eps)

        h = norm(n1, x) if self.norm_first else x
        # (B, 3, H, 1, Dh): q, k, v of the one position, already in the (B, H, T, Dh) layout
        q, k, v = F.linear(h, sa.in_proj.weight, sa.in_proj.bias).view(b, 3, heads, 1, -1).unbind(1)
        k_cache[:, :, t : t + 1] = k
        v_cache[:, :, t : t + 1] = v
        # one query at the newest position sees every cached key, so no mask is needed
        y = F.scaled_dot_product_attention(q, k_cache[:, :, : t + 1], v_cache[:, :, : t + 1])
        # (B,H,1,Dh) is head-major already; reshape, not view: CUDA's attention kernel may pad Dh
        y = F.linear(y.reshape(b, -1), sa.out.weight, sa.out.bias)
        x = x + y if self.norm_first else norm(n1, x + y)

        h = norm(n2, x) if self.norm_first else x
        q = F.linear(h, ca.in_proj.weight, ca.in_proj.bias).view(b, heads, 1, -1)
        y = F.scaled_dot_product_attention(q, *memory_kv)
        y = F.linear(y.reshape(b, -1), ca.out.weight, ca.out.bias)
        x = x + y if self.norm_first else norm(n2, x + y)

        ff_in, activation, _, ff_out = self.ff
        h = norm(n3, x) if self.norm_first else x
        y = F.linear(activation(F.linear(h, ff_in.weight, ff_in.bias)), ff_out.weight, ff_out.bias)
        return x + y if self.norm_first else norm(n3, x + y)
