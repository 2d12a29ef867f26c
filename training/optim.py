"""Optimizers by name: `build_optimizer(model, OptimConfig)`.

    python -c "from training.optim import list_optimizers; print(list_optimizers())"

Weight decay never touches 1-D parameters (norm weights, biases): only tensors with
`dim() >= 2` decay (nanoGPT's `configure_optimizers`). Ranger is pytorch_optimizer's `Ranger` (RAdam +
Lookahead(k, alpha) + gradient centralisation, as in lessw2020/Ranger-Deep-Learning-Optimizer) with
`degenerated_to_sgd=True`: in pytorch_optimizer 4.1 the default `False` makes Ranger's first ~5 steps (before
RAdam's variance rectification kicks in) move *along* the gradient (step size -lr), unlike its own RAdam,
which skips them; the original Ranger takes a momentum-SGD step there, which `True` reproduces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from pytorch_optimizer import Ranger
from torch import nn

from core.typed_config import check_choice
from training.config import OptimConfig

ParamGroups = list[dict]


def param_groups(model: nn.Module, weight_decay: float) -> ParamGroups:
    """Two groups: matrices/kernels with weight decay, 1-D tensors (norms, biases) without."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _adam_kwargs(c: OptimConfig) -> dict:
    return {"betas": (c.beta1, c.beta2), "eps": c.eps}


def _sgd_kwargs(c: OptimConfig) -> dict:
    return {"momentum": c.momentum, "nesterov": c.nesterov and c.momentum > 0}


def _radam_kwargs(c: OptimConfig) -> dict:
    return {**_adam_kwargs(c), "decoupled_weight_decay": True}


def _ranger_kwargs(c: OptimConfig) -> dict:
    return {**_adam_kwargs(c), "k": c.lookahead_k, "alpha": c.lookahead_alpha, "degenerated_to_sgd": True,
            "weight_decouple": True}  # fmt: skip


# name -> (optimizer class, its keyword arguments besides lr); build_optimizer hands every one the lr.
# Adam's weight decay is the coupled L2 penalty (torch.optim.Adam semantics), AdamW's the decoupled one.
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], Callable[[OptimConfig], dict]]] = {
    "adamw": (torch.optim.AdamW, _adam_kwargs),
    "adam": (torch.optim.Adam, _adam_kwargs),
    "sgd": (torch.optim.SGD, _sgd_kwargs),
    "radam": (torch.optim.RAdam, _radam_kwargs),
    "ranger": (Ranger, _ranger_kwargs),
}


def list_optimizers() -> list[str]:
    return sorted(OPTIMIZERS)


def build_optimizer(model: nn.Module | Iterable[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    optimizer, kwargs = OPTIMIZERS[check_choice("optim.name", cfg.name, list_optimizers())]
    if isinstance(model, nn.Module):
        groups = param_groups(model, cfg.weight_decay)
    else:
        groups = [{"params": list(model), "weight_decay": cfg.weight_decay}]
    return optimizer(groups, lr=cfg.lr, **kwargs(cfg))  # optim.lr's bounds: OptimConfig


__all__ = ["OPTIMIZERS", "build_optimizer", "list_optimizers", "param_groups"]
