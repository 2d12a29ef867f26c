"""python -m benchmarks bench_training: end-to-end training throughput of the reference-sized Transformer.

`train_e2e_img_per_s`: training images per second through the real loop (`training.loop.train`): bucketed
loader with the default augmentation, the model (ResNet-18 to stage 3, d_model 128, 4 heads, 3 layers,
ff 256), AdamW, gradient clipping, batch 16; bf16 autocast on CUDA. It is the loop's own `images_per_s` of
the second epoch (the first pays for warm-up), on `synth-small` (rendered on first use). Validation runs
on a few items only and is not part of the figure.
"""

from __future__ import annotations

import logging
import tempfile

import torch

from training.config import load_train_config
from training.loop import train

log = logging.getLogger(__name__)

DATASET = "synth-small"
TRAIN_IMAGES = {"cpu": 160, "cuda": 480}  # enough batches per epoch for a stable rate, within ~2 min on CPU
REFERENCE_MODEL = {
    "kind": "transformer", "stage1": "r18", "stage2": "r18", "stage3": "r18", "cut_after": 3,
    "d_model": 128, "nhead": 4, "num_layers": 3, "dim_feedforward": 256, "max_output_len": 150,
}


def run() -> dict[str, float]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = load_train_config({
        "data": {"dataset": DATASET, "train_limit": TRAIN_IMAGES[device], "val_limit": 16},
        "model": REFERENCE_MODEL,
        "optim": {"name": "adamw", "lr": 1e-3},
        "trainer": {"epochs": 2, "batch_size": 16, "device": device, "val_max_len": 5, "progress": False},
    })
    with tempfile.TemporaryDirectory(prefix="bench-training-") as out:
        result = train(config, out)
    warm = result.history[-1]
    log.info("epoch rates: %s", [round(row["images_per_s"], 1) for row in result.history])
    figures = {"train_e2e_img_per_s": round(warm["images_per_s"], 2)}
    if device == "cuda":
        figures["train_e2e_gpu_peak_mem_mb"] = round(warm["gpu_peak_mem_mb"], 1)
    return figures


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(run())
