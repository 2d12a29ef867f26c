"""Model 1: CNN encoder, optional row encoder, attention-LSTM decoder with input feeding (im2markup).

    model = build_model(CNNRNNConfig(decoder_hidden=256), vocab_size=500)

Deng et al., "Image-to-Markup Generation with Coarse-to-Fine Attention" (2017): the default conv stack
is theirs (six 3x3 convs, pooling that halves height more often than width so long formulas keep their
columns), the row encoder is a bidirectional LSTM over each feature row started from a learned per-row
state, and the decoder is Luong-style attention with input feeding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import DecodeState, ImageToLatexModel, ModelConfig, fp32_on_cpu, register_model
from models.step_tapes import AttentionTape, MatmulTape, plain_attention, teacher_forcing_tapes

MAX_ROWS = 128  # learned initial row states; taller feature maps reuse the last one


def _parse_pool(text: str) -> tuple[int, int] | None:
    try:
        h, w = (int(p) for p in text.lower().split("x"))
    except ValueError:
        return None
    return (h, w) if h >= 1 and w >= 1 else None


@dataclass
class CNNRNNConfig(ModelConfig):
    kind: str = "rnn"
    max_output_len: int = 150
    cnn_channels: list[int] = field(default_factory=lambda: [64, 128, 256, 256, 512, 512])
    # pooling after each conv as "HxW" ("1x1" = none); one entry per conv
    cnn_pools: list[str] = field(default_factory=lambda: ["2x2", "2x2", "1x1", "2x1", "1x2", "1x1"])
    row_encoder: bool = True
    encoder_hidden: int = 256  # per direction of the row encoder
    embed_dim: int = 80
    decoder_hidden: int = 512
    decoder_layers: int = 1
    dropout: float = 0.3

    def problems(self) -> list[str]:
        out = super().problems()
        if not self.cnn_channels or any(c < 1 for c in self.cnn_channels):
            out.append(f"cnn_channels={self.cnn_channels} must be a non-empty list of positive ints")
        if len(self.cnn_pools) != len(self.cnn_channels):
            out.append(
                f"cnn_pools has {len(self.cnn_pools)} entries but cnn_channels has {len(self.cnn_channels)}"
            )
        bad = [p for p in self.cnn_pools if _parse_pool(p) is None]
        if bad:
            out.append(f"cnn_pools entries {bad} must look like '2x1' (height x width, each >= 1)")
        for name in ("encoder_hidden", "embed_dim", "decoder_hidden", "decoder_layers"):
            if getattr(self, name) < 1:
                out.append(f"{name}={getattr(self, name)} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            out.append(f"dropout={self.dropout} must be in [0, 1)")
        return out


def _conv_stack(channels: list[int], pools: list[str]) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 1
    for out_ch, pool in zip(channels, pools, strict=True):
        layers += [
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        ]
        ph, pw = _parse_pool(pool)
        if (ph, pw) != (1, 1):
            layers.append(nn.MaxPool2d((ph, pw), (ph, pw), ceil_mode=True))
        in_ch = out_ch
    return nn.Sequential(*layers)


class CNNRNN(ImageToLatexModel):
    # On a CPU with bf16 the conv stack (most of a training step) runs in bf16; both LSTMs and the
    # per-token attention stay fp32 there by design (`fp32_on_cpu`): oneDNN has no bf16 LSTM kernel on
    # many CPUs, and a step's small matmuls only gain autocast's casts.
    def __init__(self, config: CNNRNNConfig, vocab_size: int):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        c = config
        self.cnn = _conv_stack(c.cnn_channels, c.cnn_pools)
        mem_dim = c.cnn_channels[-1]
        if c.row_encoder:
            self.row_rnn = nn.LSTM(mem_dim, c.encoder_hidden, batch_first=True, bidirectional=True)
            self.row_init = nn.Embedding(MAX_ROWS, 4 * c.encoder_hidden)  # h0, c0 for both directions
            mem_dim = 2 * c.encoder_hidden
        self.embed = nn.Embedding(vocab_size, c.embed_dim)
        self.init_state = nn.Linear(mem_dim, 2 * c.decoder_layers * c.decoder_hidden)
        self.lstm = nn.LSTM(
            c.embed_dim + c.decoder_hidden,
            c.decoder_hidden,
            num_layers=c.decoder_layers,
            batch_first=True,
            dropout=c.dropout if c.decoder_layers > 1 else 0.0,
        )
        self.attn_key = nn.Linear(mem_dim, c.decoder_hidden, bias=False)  # Luong "general" score
        self.combine = nn.Linear(c.decoder_hidden + mem_dim, c.decoder_hidden, bias=False)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.decoder_hidden, vocab_size)

    def encode(self, images: Tensor) -> Tensor:
        x = self.cnn(self.normalise(images))  # (B, C, H', W')
        b, ch, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(b * h, w, ch)  # (B*H', W', C)
        if not self.config.row_encoder:
            return rows.reshape(b, h * w, ch)  # (B, H'W', M)
        with fp32_on_cpu(x.device) as fp32:
            rows = rows.float() if fp32 else rows
            row_ids = torch.arange(h, device=x.device).clamp(max=MAX_ROWS - 1)
            init = self.row_init(row_ids).view(h, 4, -1)  # (H', 4, He)
            init = (
                init[None].expand(b, h, 4, init.shape[-1]).reshape(b * h, 4, -1).transpose(0, 1)
            )  # (4, B*H', He)
            rows, _ = self.row_rnn(rows, (init[:2].contiguous(), init[2:].contiguous()))  # (B*H', W', 2He)
        return rows.reshape(b, h * w, rows.shape[-1])  # (B, H'W', M)

    def init_decode_state(self, memory: Tensor, max_len: int) -> DecodeState:
        c = self.config
        b = memory.shape[0]
        hc = torch.tanh(self.init_state(memory.mean(dim=1)))  # (B, 2*L*Hd)
        hc = hc.view(b, 2, c.decoder_layers, c.decoder_hidden)  # (B, 2, L, Hd)
        state = DecodeState(capacity=max_len)
        state.shared = {"memory": memory, "keys": self.attn_key(memory)}  # keys (B, S, Hd)
        state.carried = {"h": hc[:, 0], "c": hc[:, 1], "feed": hc.new_zeros(b, c.decoder_hidden)}
        return state

    def _embedded_gates(self, tokens: Tensor) -> Tensor:
        """The token embedding's share of the first LSTM layer's gates, both biases included: (B, [T,] 4Hd).
        Teacher forcing knows every token up front, so this is one matmul over all steps, not one a step."""
        lstm, e = self.lstm, self.config.embed_dim
        return F.linear(self.embed(tokens), lstm.weight_ih_l0[:, :e], lstm.bias_ih_l0 + lstm.bias_hh_l0)

    def _cell_weights(self) -> list[tuple[Tensor, Tensor, Tensor | None]]:
        """Per LSTM layer: its input weight (layer 0: the fed-back attention output's share) and its hidden
        weight, both transposed, and its summed biases (layer 0's ride in the embedded gates). Taken once
        per sequence: slicing a weight inside the step would make every step's backward write a
        zero-filled gradient of the whole weight and add it in."""
        lstm, e = self.lstm, self.config.embed_dim
        out: list[tuple[Tensor, Tensor, Tensor | None]] = []
        for i in range(self.config.decoder_layers):
            w_ih, w_hh = getattr(lstm, f"weight_ih_l{i}"), getattr(lstm, f"weight_hh_l{i}")
            bias = None if i == 0 else getattr(lstm, f"bias_ih_l{i}") + getattr(lstm, f"bias_hh_l{i}")
            out.append(((w_ih[:, e:] if i == 0 else w_ih).t(), w_hh.t(), bias))
        return out

    def _step(
        self,
        gates0: Tensor,
        carried: dict[str, Tensor],
        attend: Callable[[Tensor], Tensor],
        weights: list,
        combine: Tensor | MatmulTape,
    ) -> dict:
        """One decoder step from layer 0's embedded gates: the stacked LSTM cell (nn.LSTM's arithmetic,
        gate order i, f, g, o, with `_cell_weights`), Luong attention (`attend`: query -> context), input
        feeding through `combine` (the combine layer's weight, transposed). Returns the next carried
        state."""
        h_prev, c_prev = carried["h"], carried["c"]  # (B, L, Hd)
        x, hs, cs = carried["feed"].to(gates0.dtype), [], []
        for i, (w_in, w_hh, bias) in enumerate(weights):
            if i == 0:
                gates = _addmm(gates0, x, w_in)
            else:
                x = F.dropout(x, self.lstm.dropout, self.training)  # nn.LSTM's dropout between layers
                gates = _addmm(bias, x, w_in)
            # the cell's arithmetic in fp32 under a GPU's autocast too, as cuDNN's LSTM keeps it: the cell
            # state carries error across every step of a formula
            gates = _addmm(gates, h_prev[:, i], w_hh).float()
            in_gate, forget, cell, out_gate = gates.chunk(4, dim=1)
            c = torch.sigmoid(forget) * c_prev[:, i].float() + torch.sigmoid(in_gate) * torch.tanh(cell)
            x = torch.sigmoid(out_gate) * torch.tanh(c)
            hs.append(x)
            cs.append(c)
        query = x  # (B, Hd)
        context = attend(query)  # (B, M)
        combined = torch.cat((query, context.to(query.dtype)), dim=-1)
        feed = self.drop(torch.tanh(_addmm(None, combined, combine)))
        return {"h": torch.stack(hs, dim=1), "c": torch.stack(cs, dim=1), "feed": feed}

    def decode_step(self, state: DecodeState, tokens: Tensor, step: int) -> Tensor:
        keys, memory = state.shared["keys"], state.shared["memory"]
        attend = partial(plain_attention, keys=keys, memory=memory)
        gates, combine = self._embedded_gates(tokens), self.combine.weight.t()
        state.carried = self._step(gates, state.carried, attend, self._cell_weights(), combine)
        return self.head(state.carried["feed"])  # (B, V)

    def decode(self, memory: Tensor, tgt_in: Tensor) -> Tensor:
        # input feeding makes each step depend on the previous one, so teacher forcing also steps; what
        # does not depend on it runs once over all steps: the embedding's gates before, the head after
        with fp32_on_cpu(memory.device) as fp32:
            memory = memory.float() if fp32 else memory
            state = self.init_decode_state(memory, tgt_in.shape[1])
            gates = self._embedded_gates(tgt_in)  # (B, T, 4Hd)
            keys, memory = state.shared["keys"], state.shared["memory"]
            weights, combine = self._cell_weights(), self.combine.weight.t()
            attend = partial(plain_attention, keys=keys, memory=memory)
            shared = (keys, memory, combine, *(w for ws in weights for w in ws[:2]))
            if teacher_forcing_tapes(*shared):
                attend = AttentionTape(keys, memory).attend
                tape = MatmulTape
                weights = [(tape(w_in), tape(w_hh), bias) for w_in, w_hh, bias in weights]
                combine = tape(combine)
            carried, feeds = state.carried, []
            # unbind, not gates[:, t]: each index's backward writes a zero-filled copy of all the gates
            for step_gates in gates.unbind(1):
                carried = self._step(step_gates, carried, attend, weights, combine)
                feeds.append(carried["feed"])
            return self.head(torch.stack(feeds, dim=1))  # (B, T, V)


def _addmm(bias: Tensor | None, x: Tensor, weight: Tensor | MatmulTape) -> Tensor:
    if isinstance(weight, MatmulTape):
        return weight.addmm(bias, x)
    return x.mm(weight) if bias is None else torch.addmm(bias, x, weight)


def _build(config: ModelConfig, vocab_size: int) -> CNNRNN:
    assert isinstance(config, CNNRNNConfig)
    return CNNRNN(config, vocab_size)


register_model("rnn", CNNRNNConfig, _build)
