"""Sinusoidal positional encodings: 1-D for tokens, 2-D for encoder feature maps.

Both follow "Attention Is All You Need" (sec. 3.5); the 2-D one gives half the channels to the row and
half to the column, as kingyiusuen/image-to-latex's `PositionalEncoding2D` does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoid(positions: Tensor, dim: int) -> Tensor:
    """positions (N,) -> (N, dim) float32; `dim` must be even."""
    half = torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32)
    inv_freq = torch.exp(half * (-math.log(10000.0) / dim))  # (dim/2,)
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # (N, dim/2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)  # (N, dim)


class PositionalEncoding1D(nn.Module):
    def __init__(self, d_model: int, max_len: int = 512):
        super().__init__()
        if d_model % 2:
            raise ValueError(f"PositionalEncoding1D needs an even d_model, got {d_model}")
        self.d_model = d_model
        # one table for every call: a step at position t reads exactly the row a full pass reads
        self.register_buffer("table", sinusoid(torch.arange(max_len), d_model), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x (B,T,E) holding positions offset..offset+T-1."""
        end = offset + x.shape[1]
        if end > self.table.shape[0]:
            with torch.inference_mode(False):  # a table grown while decoding must still serve training
                self.table = sinusoid(torch.arange(2 * end, device=x.device), self.d_model)
        return x + self.table[offset:end].to(x.dtype)[None]  # (B, T, E)


class PositionalEncoding2D(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        if d_model % 4:
            raise ValueError(f"PositionalEncoding2D needs d_model divisible by 4, got {d_model}")
        self.d_model = d_model

    def forward(self, x: Tensor) -> Tensor:
        """x (B,E,H,W): rows take the first E/2 channels, columns the rest."""
        _, _, h, w = x.shape
        half = self.d_model // 2
        rows = sinusoid(torch.arange(h, device=x.device), half)  # (H, E/2)
        cols = sinusoid(torch.arange(w, device=x.device), half)  # (W, E/2)
        pe = torch.cat(
            (rows.T[:, :, None].expand(half, h, w), cols.T[:, None, :].expand(half, h, w)), dim=0
        )  # (E, H, W)
        return x + pe.to(x.dtype)[None]
