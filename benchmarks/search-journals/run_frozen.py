"""Finishes the frozen search-bench run (code d308726) where one of its runs diverges.

    cd ../bench-wt   # a worktree at d308726, set up as benchmarks/RESULTS.md says
    OMP_NUM_THREADS=1 .venv/bin/python /work/main/benchmarks/search-journals/run_frozen.py --arms course_best

Why a wrapper: the frozen code's `train_once` let a NonFiniteLossError through, so the course's own config,
whose loss became NaN at epoch 5 on an AMD EPYC (AVX512-BF16), stopped the benchmark instead of being
recorded. Editing the frozen code would change its source hash and with it the key of every stored run,
retraining all of them. This wrapper is the later code's rule (benchmarks.search_arms.train_once from
the commit that added this file): a run whose loss turns non-finite counts as what it reached, its best.pt
from before the divergence, with the epochs it consumed; the epoch it diverged at goes into
`diverged.json` beside its `bench_result.json`. It changes nothing for a run that does not diverge.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

FROZEN = "d308726"


def main() -> int:
    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True).stdout
    if head.strip() != FROZEN:
        sys.exit(f"run this from a worktree at {FROZEN} (here: {head.strip() or 'not a git checkout'})")
    sys.path.insert(0, os.getcwd())
    import torch

    import training.loop
    from benchmarks.search_arms import main as bench_main
    from training.errors import NonFiniteLossError

    real_train = training.loop.train

    def train_counting_divergence(config, out_dir, **kwargs):
        started = time.time()
        try:
            return real_train(config, out_dir, **kwargs)
        except NonFiniteLossError as exc:
            best = Path(out_dir) / "best.pt"
            if not best.is_file() or best.stat().st_mtime < started:
                raise  # diverged before any epoch of this run was validated: nothing to count
            state = torch.load(best, map_location="cpu", weights_only=False)
            epochs = [{"epoch": e} for e in range(1, exc.epoch + 1)]  # the diverging epoch was spent too
            note = {"diverged_at_epoch": exc.epoch, "step": exc.step, "loss": str(exc.value),
                    "best_epoch": state["epoch"]}  # fmt: skip
            (Path(out_dir) / "diverged.json").write_text(json.dumps(note, indent=2) + "\n")
            print(f"run in {out_dir} diverged at epoch {exc.epoch}; counting its best.pt (epoch "
                  f"{state['epoch']})", flush=True)  # fmt: skip
            return training.loop.TrainResult(best, Path(out_dir) / "last.pt", dict(state["metrics"]), epochs)

    training.loop.train = train_counting_divergence  # train_once imports it when it runs
    return bench_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
