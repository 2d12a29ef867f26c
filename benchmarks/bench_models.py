"""python -m benchmarks bench_models: training and decoding speed of the reference-sized models.

Reference-sized Transformer (ResNet-18 to stage 3, d_model 128, 4 heads, 3 layers, ff 256) and the default
CNN+RNN (figures prefixed `rnn_`), batch 16 of 1x64x320 images, a 500-token vocabulary, random weights.
Decoding is greedy and runs all 150 steps (`stop_at_eos=False`; EOS is also made unlikely so the check
that KV-cache and full-recompute decoding give identical tokens covers every step). The training step is
timed twice: `train_step_img_per_s_fp32` (= `train_step_img_per_s`, fp32, the default memory layout) and
`train_step_img_per_s_fast` (the precision training.precision picks on this machine, `precision_mode`, and
channels-last convolutions, as training runs). Decoding runs as validation and predict run it (the same
autocast; on the CPU the decoder's token steps stay fp32 by design, and the encoder's output is the same
for both decoders, so the identity check stays exact there; under bf16 on CUDA the two decoders may part
at a near tie). `decode_ms_per_step_b16` is one KV-cache decoder step at batch
16, encoder left out. On CUDA the same figures are recorded again with a `cuda_` prefix.

Decode figures are end to end (encoder included, as validation runs it); `decode_kv_speedup_decoder_only`
leaves the shared encoder time out. On CPU the LSTM's full recompute is timed for its first 30 steps and
extrapolated (its cost is exactly proportional to the decoder steps it re-runs); the figure
`rnn_decode_recompute_extrapolated_from_steps` says so. Everything else is measured in full.

CPU figures use one intra-op thread (`BENCH_CPU_THREADS` changes it; `models_cpu_threads` records it): at
batch 16 the decoder's matrices are small, and on a shared machine a second thread mostly spin-waits
(measured here: 150 KV-cache steps take 0.18 s on one thread, over 1 s on two under load).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from data_prep.vocab import EOS_ID, PAD_ID
from models import CNNRNNConfig, ResNetTransformerConfig, build_model
from models.base import ImageToLatexModel
from models.decoding import greedy_decode
from training.precision import Precision, choose_precision
from training.runtime import autocast, to_device

log = logging.getLogger(__name__)

BATCH, HEIGHT, WIDTH, VOCAB, MAX_LEN = 16, 64, 320, 500, 150
TRAIN_TARGET_LEN = 60  # a typical im2latex formula length, SOS/EOS included
TRAIN_STEPS = 3
KV_RUNS = 5
RECOMPUTE_RUNS = 2
CPU_RNN_RECOMPUTE_STEPS = 30


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds_per_call(fn: Callable[[], object], device: torch.device, runs: int) -> float:
    """The fastest of `runs` timed calls after a warm-up: on a shared machine the slower calls measure
    the neighbours, not the code (timeit's reasoning for taking the minimum)."""
    fn()  # warm-up: allocator, kernels, lazy init
    best = float("inf")
    for _ in range(runs):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def _train_step_fn(
    model: ImageToLatexModel, images: torch.Tensor, device: torch.device, precision: Precision
) -> Callable[[], None]:
    optim = torch.optim.Adam(model.parameters(), lr=1e-4)
    targets = torch.randint(3, VOCAB, (BATCH, TRAIN_TARGET_LEN), device=device)

    def step() -> None:
        model.train()
        with precision.autocast(device):
            logits = model(images, targets[:, :-1])  # (B, T-1, V)
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), targets[:, 1:].flatten(), ignore_index=PAD_ID
            )
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    return step


def _decode_seconds(model: ImageToLatexModel, images: torch.Tensor, device: torch.device, **kw) -> tuple:
    _sync(device)
    start = time.perf_counter()
    result = greedy_decode(model, images, stop_at_eos=False, **kw)
    _sync(device)
    return time.perf_counter() - start, result


def _bench_family(
    model: ImageToLatexModel, device: torch.device, prefix: str, recompute_steps: int = MAX_LEN
) -> dict[str, float]:
    images = torch.rand(BATCH, 1, HEIGHT, WIDTH, device=device)
    fp32 = Precision("fp32", "the baseline")
    fp32_s = _seconds_per_call(_train_step_fn(model, images, device, fp32), device, TRAIN_STEPS)
    # what training runs: the precision training.precision picks here, channels-last convolutions
    fast = choose_precision(device, "auto", type(model).cpu_bf16)
    model = to_device(model, device)
    train_s = _seconds_per_call(_train_step_fn(model, images, device, fast), device, TRAIN_STEPS)
    model.eval()
    with torch.no_grad():
        model.head.bias[EOS_ID] = -1e4  # full-length sequences: the identity check covers every token
    # decoding as validation and predict run it (the CPU's decoder steps stay fp32 under the autocast)
    with torch.no_grad(), autocast(device, "auto", model):
        encode_s = _seconds_per_call(lambda: model.encode(images), device, KV_RUNS)
        kv_s = _seconds_per_call(lambda: greedy_decode(model, images, stop_at_eos=False), device, KV_RUNS)
        _, kv = _decode_seconds(model, images, device)
        full_s, full = min(
            (_decode_seconds(model, images, device, max_len=recompute_steps, use_cache=False)
             for _ in range(RECOMPUTE_RUNS)),
            key=lambda timed: timed[0],
        )
    figures: dict[str, float] = {}
    if recompute_steps < MAX_LEN:
        # step t of a recompute decode re-runs t decoder steps, so the decoder part grows as t(t+1)/2
        scale = (MAX_LEN * (MAX_LEN + 1)) / (recompute_steps * (recompute_steps + 1))
        full_s = encode_s + (full_s - encode_s) * scale
        figures[f"{prefix}decode_recompute_extrapolated_from_steps"] = recompute_steps
    same = sum(a[:recompute_steps] == b for a, b in zip(kv.sequences, full.sequences, strict=True)) / BATCH
    if same < 1.0:
        log.warning(
            "%s: KV-cache and recompute decoding differ on %.0f%% of sequences", prefix, 100 * (1 - same)
        )
    figures.update(
        {
            f"{prefix}train_step_img_per_s": round(BATCH / fp32_s, 2),  # the fp32 figure, as before
            f"{prefix}train_step_img_per_s_fp32": round(BATCH / fp32_s, 2),
            f"{prefix}train_step_img_per_s_fast": round(BATCH / train_s, 2),
            f"{prefix}precision_mode": fast.mode,
            f"{prefix}decode_ms_per_step_b{BATCH}": round(1000 * max(kv_s - encode_s, 0.0) / MAX_LEN, 3),
            f"{prefix}encode_formulas_per_s": round(BATCH / encode_s, 2),
            f"{prefix}decode_kv_formulas_per_s": round(BATCH / kv_s, 2),
            f"{prefix}decode_recompute_formulas_per_s": round(BATCH / full_s, 3),
            f"{prefix}decode_kv_speedup": round(full_s / kv_s, 2),
            f"{prefix}decode_kv_speedup_decoder_only": round(
                (full_s - encode_s) / max(kv_s - encode_s, 1e-9), 2
            ),
            f"{prefix}decode_kv_identical_frac": same,
            f"{prefix}num_parameters": model.num_parameters(),
        }
    )
    return figures


def run() -> dict[str, float]:
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    figures: dict[str, float] = {}
    threads_before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("BENCH_CPU_THREADS", "1")))
    try:
        for device in devices:
            dev_prefix = "cuda_" if device.type == "cuda" else ""
            for family, config in (("", ResNetTransformerConfig()), ("rnn_", CNNRNNConfig())):
                torch.manual_seed(0)
                model = build_model(config, VOCAB).to(device)
                # a full CPU recompute of the LSTM runs 11,325 LSTM steps (~1 min): time 30, extrapolate
                steps = CPU_RNN_RECOMPUTE_STEPS if family == "rnn_" and device.type == "cpu" else MAX_LEN
                figures.update(_bench_family(model, device, dev_prefix + family, recompute_steps=steps))
        figures["models_cpu_threads"] = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads_before)
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key} = {value}")
