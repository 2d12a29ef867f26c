"""How fast a trained model decodes: greedy KV-cache decoding of a fixed slice of the validation split.

    result = train(config, out)   # result.decode_speed == {"decode/ms_per_formula": ..., ...}

`decode/ms_per_formula` decodes one formula at a time (what an interactive user waits for) and
`decode/formulas_per_s` decodes the same formulas in validation-sized batches (what a bulk job gets). The
best checkpoint's weights are timed: an untrained model that never emits EOS decodes to the length cap,
so the speed depends on what the model learned, not only on its size. The slice is the split's first
`trainer.decode_speed_formulas` images, the same for every trial of a study. It decodes as predict does (the
same autocast), after every batch shape has been decoded once: the first call of a shape pays for kernel
selection and allocation (cuDNN autotuning, oneDNN primitives), which a user's steady stream does not.
"""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader

from models.decoding import greedy_decode
from training.runtime import autocast

WARM_UP_TOKENS = 2  # enough to run the encoder and a decoder step of each shape


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def measure_decode_speed(
    model: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    n_formulas: int,
    max_len: int | None,
    amp: bool | str = "auto",
) -> dict[str, float]:
    """{'decode/ms_per_formula', 'decode/formulas_per_s'} over the first `n_formulas` images of `loader`
    (an unshuffled validation loader); {} when it has none."""
    batches, taken = [], 0
    for batch in loader:
        images = batch.images[: n_formulas - taken].to(device)
        batches.append(images)
        taken += len(images)
        if taken >= n_formulas:
            break
    if not taken:
        return {}
    was_training = model.training
    model.eval()
    with autocast(device, amp, model):
        for images in batches:  # one warm-up per shape: batch-1 (one per bucket) and each batch
            greedy_decode(model, images[:1], max_len=WARM_UP_TOKENS, stop_at_eos=False)
            greedy_decode(model, images, max_len=WARM_UP_TOKENS, stop_at_eos=False)
        _sync(device)
        start = time.perf_counter()
        for images in batches:
            for i in range(len(images)):
                greedy_decode(model, images[i : i + 1], max_len=max_len)
        _sync(device)
        single_s = time.perf_counter() - start
        start = time.perf_counter()
        for images in batches:
            greedy_decode(model, images, max_len=max_len)
        _sync(device)
        batched_s = time.perf_counter() - start
    model.train(was_training)
    return {
        "decode/ms_per_formula": 1000.0 * single_s / taken,
        "decode/formulas_per_s": taken / batched_s if batched_s > 0 else float("inf"),
    }


__all__ = ["measure_decode_speed"]
