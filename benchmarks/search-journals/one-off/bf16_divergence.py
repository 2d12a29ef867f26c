"""One-off (2026-12-07, AMD EPYC with AVX512-BF16, one thread): which part of bf16 autocast makes the
course's config (the search bench's course_best) diverge. Trains it for `epochs` with one module family
forced to fp32 and counts the steps whose clipped gradient norm was not finite.

    OMP_NUM_THREADS=1 python benchmarks/search-journals/one-off/bf16_divergence.py SEED VARIANT [EPOCHS]
    VARIANT: bf16 | bnfp32 | convfp32 | linearfp32   (seed 2, 1 epoch: benchmarks/RESULTS.md, Precision)

It patches torch classes in this process only: a diagnostic, not a training path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from benchmarks import search_arms  # noqa: E402
from core.typed_config import set_path  # noqa: E402
from training.loop import train  # noqa: E402


def in_fp32(cls: type) -> None:
    forward = cls.forward

    def fp32_forward(self, *args, **kwargs):
        floats = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
        with torch.autocast("cpu", enabled=False):
            return forward(self, *floats, **kwargs)

    cls.forward = fp32_forward


def main() -> None:
    seed, variant = int(sys.argv[1]), sys.argv[2]
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    plan = search_arms.make_plan(argparse.Namespace(quick=False, spec=search_arms.SPEC_NAME, budget=None,
                                                    out=None, render=False, arms=()))  # fmt: skip
    config = search_arms.course_config(plan)
    set_path(config, "trainer.seed", seed)
    set_path(config, "trainer.epochs", epochs)
    if variant == "bnfp32":
        in_fp32(torch.nn.modules.batchnorm._BatchNorm)
    elif variant == "convfp32":
        in_fp32(torch.nn.Conv2d)
    elif variant == "linearfp32":
        in_fp32(torch.nn.Linear)
        sdpa = F.scaled_dot_product_attention

        def sdpa_fp32(q, k, v, *args, **kwargs):
            with torch.autocast("cpu", enabled=False):
                return sdpa(q.float(), k.float(), v.float(), *args, **kwargs)

        F.scaled_dot_product_attention = sdpa_fp32
    clip, inf_steps = torch.nn.utils.clip_grad_norm_, []

    def counting_clip(params, max_norm, *args, **kwargs):
        norm = clip(params, max_norm, *args, **kwargs)
        if not torch.isfinite(norm):
            inf_steps.append(1)
        return norm

    torch.nn.utils.clip_grad_norm_ = counting_clip
    out = Path("runs") / "bf16-divergence" / f"{variant}-seed{seed}"
    try:
        result = train(search_arms._load(config), out)
        print("completed; val avg per epoch", [round(h.get("val/avg_score", 0), 2) for h in result.history])
    except FloatingPointError as exc:
        print("diverged:", exc)
    print("steps with a non-finite gradient norm:", len(inf_steps))


if __name__ == "__main__":
    main()
