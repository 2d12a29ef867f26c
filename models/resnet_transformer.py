"""Model 2: ResNet encoder (per-stage ResNet-18/34/50 blocks, cut after stage 2/3/4) + Transformer decoder.

    model = build_model(ResNetTransformerConfig(stage2="r34", stage3="r34", cut_after=4), vocab_size=500)

The defaults are kingyiusuen/image-to-latex's `ResNetTransformer`: ResNet-18 up to stage 3, d_model 128,
4 heads, 3 post-norm layers, feed-forward 256, dropout 0.3, 150 output tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from models.base import DecodeState, ImageToLatexModel, ModelConfig, register_model
from models.positional import PositionalEncoding1D, PositionalEncoding2D
from models.resnet_encoder import ResNetEncoder, stage_problems
from models.transformer_layers import ACTIVATIONS, DecoderLayer


@dataclass
class ResNetTransformerConfig(ModelConfig):
    kind: str = "transformer"
    max_output_len: int = 150
    # which ResNet's blocks (block type and count) each stage uses: "r18", "r34" or "r50"
    stage1: str = "r18"
    stage2: str = "r18"
    stage3: str = "r18"
    stage4: str = "r18"
    cut_after: int = 3  # last stage kept: 2, 3 or 4 (stages after it are ignored)
    d_model: int = 128
    nhead: int = 4
    num_layers: int = 3
    dim_feedforward: int = 256
    dropout: float = 0.3
    norm_first: bool = False  # False: post-norm (the reference and nn.Transformer's default)
    activation: str = "relu"

    @property
    def stages(self) -> list[str]:
        return [self.stage1, self.stage2, self.stage3, self.stage4]

    def problems(self) -> list[str]:
        out = super().problems() + stage_problems(self.stages, self.cut_after)
        if self.d_model < 4 or self.d_model % 4:
            out.append(f"d_model={self.d_model} must be a positive multiple of 4 (2-D positional encoding)")
        if self.nhead < 1 or self.d_model % self.nhead:
            out.append(f"d_model={self.d_model} must be divisible by nhead={self.nhead}")
        if self.num_layers < 1:
            out.append(f"num_layers={self.num_layers} must be >= 1")
        if self.dim_feedforward < 1:
            out.append(f"dim_feedforward={self.dim_feedforward} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            out.append(f"dropout={self.dropout} must be in [0, 1)")
        if self.activation not in ACTIVATIONS:
            out.append(f"activation={self.activation!r} must be one of {sorted(ACTIVATIONS)}")
        return out


class ResNetTransformer(ImageToLatexModel):
    def __init__(self, config: ResNetTransformerConfig, vocab_size: int):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        c = config
        self.backbone = ResNetEncoder(c.stages, c.cut_after)
        self.bottleneck = nn.Conv2d(self.backbone.out_channels, c.d_model, kernel_size=1)
        self.pos_2d = PositionalEncoding2D(c.d_model)
        self.embed = nn.Embedding(vocab_size, c.d_model)
        self.pos_1d = PositionalEncoding1D(c.d_model, max_len=max(512, c.max_output_len + 2))
        self.embed_drop = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            DecoderLayer(c.d_model, c.nhead, c.dim_feedforward, c.dropout, c.norm_first, c.activation)
            for _ in range(c.num_layers)
        )
        # post-norm layers end normalised already; pre-norm needs a last norm before the head
        self.final_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.head = nn.Linear(c.d_model, vocab_size)
        # the reference's init of the token embedding and output layer
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.uniform_(self.head.weight, -0.1, 0.1)
        nn.init.zeros_(self.head.bias)

    def encode(self, images: Tensor) -> Tensor:
        x = self.backbone(self.normalise(images))  # (B, C, H', W')
        x = self.pos_2d(self.bottleneck(x))  # (B, E, H', W')
        return x.flatten(2).transpose(1, 2)  # (B, H'W', E)

    def _embed(self, tokens: Tensor, offset: int) -> Tensor:
        x = self.embed(tokens) * math.sqrt(self.config.d_model)  # (B, T, E)
        return self.embed_drop(self.pos_1d(x, offset))

    def decode(self, memory: Tensor, tgt_in: Tensor) -> Tensor:
        x = self._embed(tgt_in, 0)  # (B, T, E)
        for layer in self.layers:
            x = layer(x, layer.cross_attn.project_kv(memory))
        return self.head(self.final_norm(x))  # (B, T, V)

    def init_decode_state(self, memory: Tensor, max_len: int) -> DecodeState:
        state = DecodeState(capacity=max_len)
        for i, layer in enumerate(self.layers):
            # contiguous once per decode: attention reads these every step
            mk, mv = (t.contiguous() for t in layer.cross_attn.project_kv(memory))
            state.shared[f"mk{i}"], state.shared[f"mv{i}"] = mk, mv
            # the self-attention cache, written in place step by step; beam search reorders its filled part
            for name in (f"self{i}.k", f"self{i}.v"):
                state.carried[name] = mk.new_empty(mk.shape[0], mk.shape[1], max_len, mk.shape[3])
                state.time_dims[name] = 2
        return state

    def decode_step(self, state: DecodeState, tokens: Tensor, step: int) -> Tensor:
        x = self._embed(tokens[:, None], step)[:, 0]  # (B, E)
        shared, carried = state.shared, state.carried
        for i, layer in enumerate(self.layers):
            cache = (carried[f"self{i}.k"], carried[f"self{i}.v"])
            x = layer.step(x, (shared[f"mk{i}"], shared[f"mv{i}"]), cache, step)
        state.length = step + 1
        return self.head(self.final_norm(x))  # (B, V)


def _build(config: ModelConfig, vocab_size: int) -> ResNetTransformer:
    assert isinstance(config, ResNetTransformerConfig)
    return ResNetTransformer(config, vocab_size)


register_model("transformer", ResNetTransformerConfig, _build)
