"""The model config base, the family registry and the module interface decoding relies on.

    from models import build_model, ModelConfig
    model = build_model(typed_config.from_dict(ModelConfig, {"kind": "rnn"}), vocab_size=500)

A new family is one module that defines a `ModelConfig` subclass (with `problems()`), an
`ImageToLatexModel` subclass and calls `register_model(kind, config_cls, builder)`; `models/__init__.py`
imports it so the registration happens on `import models`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from core.typed_config import ConfigError

DEFAULT_KIND = "transformer"


class InvalidModelConfig(ConfigError):
    """A model config point that cannot be built (e.g. d_model not divisible by nhead)."""


@contextlib.contextmanager
def fp32_on_cpu(device: torch.device) -> Iterator[bool]:
    """Runs the block in fp32 when it would run under the CPU's bf16 autocast, and yields True then (the
    caller casts its bf16 inputs to fp32). For the parts that do not gain from bf16 on a CPU: small
    per-token matmuls, whose time is per-call overhead that autocast's casts only add to, and LSTMs,
    which oneDNN has no bf16 kernel for on many CPUs. On a GPU the block keeps the caller's precision."""
    if device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            yield True
    else:
        yield False


@dataclass
class ModelConfig:
    """Base of the per-family configs; `kind` picks the family (see `list_models()`)."""

    kind: str = DEFAULT_KIND
    max_output_len: int = 150  # decoding steps, EOS included

    @classmethod
    def resolve_subclass(cls, data: dict[str, Any]) -> type[ModelConfig]:
        """The hook `core.typed_config.from_dict` calls: the registered config class for `data["kind"]`."""
        own_kind = _default_kind(cls)
        kind = data.get("kind", own_kind)
        if kind not in _REGISTRY:
            raise InvalidModelConfig(f"unknown model kind {kind!r}; valid kinds: {', '.join(list_models())}")
        target = _REGISTRY[kind].config_cls
        if cls is not ModelConfig and not issubclass(target, cls):
            raise InvalidModelConfig(
                f"kind {kind!r} builds {target.__name__}, not {cls.__name__}: "
                "drop `kind` or load it as ModelConfig"
            )
        return target

    def problems(self) -> list[str]:
        """Every reason this point cannot be built (empty when it can); subclasses extend it."""
        out = []
        if self.max_output_len < 1:
            out.append(f"max_output_len={self.max_output_len} must be >= 1")
        return out


def _default_kind(cls: type) -> str:
    for f in dataclasses.fields(cls):
        if f.name == "kind":
            return f.default
    return DEFAULT_KIND


@dataclass
class _Entry:
    config_cls: type[ModelConfig]
    builder: Callable[[ModelConfig, int], ImageToLatexModel]


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    kind: str, config_cls: type[ModelConfig], builder: Callable[[ModelConfig, int], ImageToLatexModel]
) -> None:
    """Make `kind` buildable; registering the same kind with another config class is an error."""
    known = _REGISTRY.get(kind)
    if known is not None and known.config_cls is not config_cls:
        raise ValueError(f"model kind {kind!r} is already registered to {known.config_cls.__name__}")
    if _default_kind(config_cls) != kind:
        raise ValueError(f"{config_cls.__name__}.kind must default to {kind!r} to be registered under it")
    _REGISTRY[kind] = _Entry(config_cls, builder)


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def validate(config: ModelConfig) -> None:
    """Raise InvalidModelConfig listing every problem of `config` (the search's constraint uses it)."""
    entry = _REGISTRY.get(config.kind)
    if entry is None:
        raise InvalidModelConfig(
            f"unknown model kind {config.kind!r}; valid kinds: {', '.join(list_models())}"
        )
    if not isinstance(config, entry.config_cls):
        raise InvalidModelConfig(
            f"model kind {config.kind!r} needs a {entry.config_cls.__name__}, got {type(config).__name__}"
        )
    found = config.problems()
    if found:
        raise InvalidModelConfig(f"invalid {config.kind} model config: " + "; ".join(found))


def build_model(config: ModelConfig, vocab_size: int) -> ImageToLatexModel:
    if type(config) is ModelConfig:  # a bare base config: give it its family's defaults
        from core.typed_config import from_dict, to_dict

        config = from_dict(ModelConfig, to_dict(config))
    validate(config)
    if vocab_size < 5:
        raise InvalidModelConfig(f"vocab_size={vocab_size} must be > 4 (the special tokens plus one symbol)")
    return _REGISTRY[config.kind].builder(config, vocab_size)


@dataclass
class DecodeState:
    """What incremental decoding carries from one step to the next.

    `carried` holds per-sequence tensors (batch first) that beam search reorders; `shared` holds per-image
    constants (encoder memory, cross-attention K/V) that are equal across one image's beams. A carried
    tensor named in `time_dims` has a `capacity`-long time axis there, filled up to `length`.
    """

    capacity: int
    carried: dict[str, Tensor] = field(default_factory=dict)
    shared: dict[str, Tensor] = field(default_factory=dict)
    time_dims: dict[str, int] = field(default_factory=dict)
    length: int = 0

    def reorder(self, index: Tensor) -> None:
        for key, value in self.carried.items():
            dim = self.time_dims.get(key)
            if dim is None:
                self.carried[key] = value.index_select(0, index)
            else:  # copy only the filled part of a preallocated cache, in place
                filled = value.narrow(dim, 0, self.length)
                filled.copy_(filled.index_select(0, index))


class ImageToLatexModel(nn.Module):
    """Encoder-decoder over images (B,1,H,W) in [0,1] (white background 1.0) and token ids."""

    config: ModelConfig
    vocab_size: int
    # whether bf16 autocast speeds this family up on a CPU with bf16 instructions (training.precision)
    cpu_bf16: ClassVar[bool] = True

    def forward(self, images: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: (B,1,H,W), (B,T) -> logits (B,T,V)."""
        return self.decode(self.encode(images), tgt_in)

    def encode(self, images: Tensor) -> Tensor:
        """(B,1,H,W) -> memory (B,S,E)."""
        raise NotImplementedError

    def decode(self, memory: Tensor, tgt_in: Tensor) -> Tensor:
        """Full (non-incremental) decoder pass: memory (B,S,E), (B,T) -> logits (B,T,V)."""
        raise NotImplementedError

    def init_decode_state(self, memory: Tensor, max_len: int) -> DecodeState:
        raise NotImplementedError

    def decode_step(self, state: DecodeState, tokens: Tensor, step: int) -> Tensor:
        """Feed token `step` of every sequence (B,) and return the next-token logits (B,V)."""
        raise NotImplementedError

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    @staticmethod
    def normalise(images: Tensor) -> Tensor:
        # Ink becomes positive and the background 0, so convolution zero-padding looks like background.
        return 1.0 - images.float()
