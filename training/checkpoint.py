"""Checkpoints: everything needed to resume a run or to predict, loadable with `weights_only=True`.

    python -c "from training.checkpoint import load_checkpoint as l; print(l('runs/x/best.pt').keys())"

A checkpoint is a dict of tensors and plain Python values only (the resolved config as a dict, the vocab as
its token list, RNG states as tensors/lists), so `torch.load(path, weights_only=True)` reads it and no
pickled class can run code on load. Writes go to a temp file then `os.replace`, so a crash mid-write never
leaves a truncated `last.pt`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *map(_plain, np_state[2:])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore rng_state()'s RNGs; works whatever device the checkpoint's tensors were loaded onto."""
    random.setstate(_as_tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Atomically write `payload` (plus the format version) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"format_version": FORMAT_VERSION, **payload}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass a training run's best.pt or last.pt")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path} is not a training checkpoint (no 'model'/'config' entries)")
    return ckpt


def load_model(path: Path, device: str | torch.device = "cpu"):
    """(model in eval mode on `device`, Vocab, TrainConfig) from a checkpoint."""
    from data_prep.vocab import Vocab
    from models import build_model
    from training.config import load_train_config
    from training.runtime import to_device

    ckpt = load_checkpoint(path)
    config = load_train_config(ckpt["config"])
    vocab = Vocab(ckpt["vocab"])
    model = build_model(config.model, len(vocab))
    model.load_state_dict(ckpt["model"])
    return to_device(model, torch.device(device)).eval(), vocab, config


__all__ = ["FORMAT_VERSION", "load_checkpoint", "load_model", "rng_state", "save_checkpoint", "set_rng_state"]
