"""Finishes the frozen search-bench run (code d308726) where one of its runs diverges.

    cd ../bench-wt   # a worktree at d308726, set up as benchmarks/RESULTS.md says
    OMP_NUM_THREADS=1 .venv/bin/python /work/main/benchmarks/search-journals/run_frozen.py --arms course_best

Why a wrapper: the frozen code's `train_once` let a NonFiniteLossError through, so the course's own config,
whose loss became NaN at epoch 5 on an AMD EPYC (AVX512-BF16), stopped the benchmark instead of being
recorded. Editing the frozen code would change its source hash and with it the key of every stored run,
retraining all of them. This wrapper is the later code's rule (benchmarks.search_arms.train_once from
the commit that added this file): a run whose loss turns non-finite counts as what it reached, its best.pt
from before the divergence, with the epochs it consumed; the epoch it diverged at goes into
`diverged.json` beside its `bench_result.json`. A run that diverged before its first validation has no
model: no val or test score (None, left out of the means), and it is not trained again when the results
are written (run this script without --arms for that, not `python -m benchmarks search`, which would
train it again). It changes nothing for a run that does not diverge.
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

    import benchmarks.search_arms as frozen
    import training.loop
    from training.errors import NonFiniteLossError

    real_train, real_score = training.loop.train, frozen.score_test

    def nothing_to_score(out: Path, epochs: int) -> training.loop.TrainResult:
        spent = [{"epoch": e} for e in range(1, epochs + 1)]
        return training.loop.TrainResult(out / "best.pt", out / "last.pt", {}, spent)

    def train_counting_divergence(config, out_dir, **kwargs):
        out, started = Path(out_dir), time.time()
        note_path = out / "diverged.json"
        if note_path.is_file() and not (out / "best.pt").is_file():  # known to end without a model
            return nothing_to_score(out, json.loads(note_path.read_text())["diverged_at_epoch"])
        try:
            return real_train(config, out_dir, **kwargs)
        except NonFiniteLossError as exc:
            best = out / "best.pt"
            state = None
            if best.is_file() and best.stat().st_mtime >= started:  # an older best.pt is another run's
                state = torch.load(best, map_location="cpu", weights_only=False)
            note = {"diverged_at_epoch": exc.epoch, "step": exc.step, "loss": str(exc.value),
                    "best_epoch": None if state is None else state["epoch"]}  # fmt: skip
            note_path.write_text(json.dumps(note, indent=2) + "\n")
            print(f"run in {out_dir} diverged at epoch {exc.epoch}; best.pt of epoch {note['best_epoch']}",
                  flush=True)  # fmt: skip
            if state is None:
                best.unlink(missing_ok=True)
                return nothing_to_score(out, exc.epoch)
            epochs = [{"epoch": e} for e in range(1, exc.epoch + 1)]  # the diverging epoch was spent too
            return training.loop.TrainResult(best, out / "last.pt", dict(state["metrics"]), epochs)

    def score_if_any(plan, checkpoint):
        return real_score(plan, checkpoint) if Path(checkpoint).is_file() else None

    training.loop.train = train_counting_divergence  # train_once imports it when it runs
    frozen.score_test = score_if_any
    return frozen.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
