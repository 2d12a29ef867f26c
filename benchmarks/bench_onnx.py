"""ONNX export (`python -m training export-onnx`): parity with PyTorch and ONNX Runtime's decoding speed.

Parity: the CPU profile's reference config (transformer.yaml's `reference-default` on transformer-cpu's
base) trained for 2 epochs on synth-cpu, exported, and every validation image decoded greedily by both:
`onnx_val_identical_frac` of the 750 formulas come out token for token the same; a differing one counts
as a near tie (`onnx_val_near_ties`) when PyTorch's top two logits at the first difference are within
1e-3 (relative). Both run in fp32 (an ONNX graph is fp32; PyTorch's bf16 mode would differ by design).

Speed: bench_models' batch (16 images of 64x320, the reference-size Transformer, random weights, EOS
held back so every row decodes all 150 steps), greedy decoding end to end (encoder included) by PyTorch
(fp32, KV cache) and by ONNX Runtime, one thread each: `onnx_decode_formulas_per_s` beside
`torch_decode_formulas_per_s_fp32`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_models import BATCH, HEIGHT, VOCAB, WIDTH
from data_prep.vocab import EOS_ID

PARITY_EPOCHS = 2
RUNS = 3


def _trained_checkpoint(work: Path) -> Path:
    from benchmarks.hand_tuning import COURSE_SPEC
    from core.typed_config import set_path, to_dict
    from search.spec.config_paths import base_config_dict
    from search.spec.parse import load_spec
    from training.config import load_train_config
    from training.loop import train

    profile = load_spec("transformer-cpu")
    data = base_config_dict(profile)
    reference = next(e for e in load_spec(COURSE_SPEC).enqueue if e.label == "reference-default")
    for path, value in reference.params.items():
        set_path(data, path, value)
    set_path(data, "trainer.epochs", PARITY_EPOCHS)
    set_path(data, "trainer.amp", False)
    config = load_train_config(to_dict(load_train_config(data)))
    return train(config, work / "run").best_checkpoint


def _validation_pixels(checkpoint: Path) -> list[np.ndarray]:
    from data_prep.dataset import build_loader
    from training.checkpoint import load_model
    from training.loop import resolve_dataset

    _, vocab, config = load_model(checkpoint, torch.device("cpu"))
    loader = build_loader(resolve_dataset(config.data.dataset), "validate", vocab, 64, shuffle=False)
    return [(im[0].numpy() * 255).round().astype(np.uint8) for batch in loader for im in batch.images]


def _speed(work: Path) -> dict[str, float]:
    from models import ResNetTransformerConfig, build_model
    from models.decoding import greedy_decode
    from training.onnx_export import OnnxPredictor, export_onnx

    torch.manual_seed(0)
    model = build_model(ResNetTransformerConfig(), VOCAB).eval()
    with torch.no_grad():
        model.head.bias[EOS_ID] = -1e4  # full-length rows, as bench_models decodes them
    checkpoint = _checkpoint_of(model, work)
    folder = export_onnx(checkpoint, work / "speed-onnx")
    images = torch.rand(BATCH, 1, HEIGHT, WIDTH)
    onnx = OnnxPredictor(folder, threads=1)
    onnx.decode(images.numpy())  # warm-up
    torch_s, onnx_s = float("inf"), float("inf")
    with torch.no_grad():
        greedy_decode(model, images)
        for _ in range(RUNS):
            start = time.perf_counter()
            greedy_decode(model, images)
            torch_s = min(torch_s, time.perf_counter() - start)
            start = time.perf_counter()
            onnx.decode(images.numpy())
            onnx_s = min(onnx_s, time.perf_counter() - start)
    return {"torch_decode_formulas_per_s_fp32": round(BATCH / torch_s, 2),
            "onnx_decode_formulas_per_s": round(BATCH / onnx_s, 2)}  # fmt: skip


def _checkpoint_of(model: torch.nn.Module, work: Path) -> Path:
    """A checkpoint file for a bare model, in the format training writes (random weights, no dataset)."""
    from core.typed_config import to_dict
    from data_prep.vocab import SPECIAL_TOKENS
    from training.config import TrainConfig

    config = TrainConfig()
    config.model = model.config
    path = work / "speed.pt"
    vocab = [*SPECIAL_TOKENS, *(f"t{i}" for i in range(VOCAB - len(SPECIAL_TOKENS)))]
    torch.save({"model": model.state_dict(), "vocab": vocab, "config": to_dict(config)}, path)
    return path


def run() -> dict[str, float]:
    from training.onnx_export import export_onnx, parity

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            figures = _speed(work)
            checkpoint = _trained_checkpoint(work)
            folder = export_onnx(checkpoint, work / "onnx")
            result = parity(checkpoint, folder, _validation_pixels(checkpoint))
    finally:
        torch.set_num_threads(threads)
    figures.update({"onnx_val_rows": result["onnx_rows"], "onnx_val_near_ties": result["onnx_near_ties"],
                    "onnx_val_identical_frac": result["onnx_identical_frac"]})  # fmt: skip
    return figures
