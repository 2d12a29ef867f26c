"""python -m benchmarks bench_harness: how much of a trial the study harness itself costs.

harness_overhead_fraction = (study wall time - time the training loop spends training) / study wall time,
over real trials of the transformer study's reference-default baseline (the reference-sized model,
2 epochs on synth-small, ~30 s each on 2 CPU cores; real trials run for minutes, so this is an upper
bound). Everything that is not training counts as harness: Optuna (ask/suggest, storage writes, report,
should_prune, tell), config building and checks, and MLflow (child run, params, per-epoch metrics, config
and predictions artifacts, status). The one-off study setup (journal file, MLflow store creation, parent
run, dataset build) is excluded: it is paid once per study, not per trial. Target: <= 0.01.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

N_TRIALS = 2
EPOCHS = 2


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        old_home = os.environ.get("IM2LATEX_HOME")
        old_uri = os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ["IM2LATEX_HOME"] = home
        try:
            return _measure()
        finally:
            if old_home is None:
                os.environ.pop("IM2LATEX_HOME", None)
            else:
                os.environ["IM2LATEX_HOME"] = old_home
            if old_uri is not None:
                os.environ["MLFLOW_TRACKING_URI"] = old_uri


def _measure() -> dict[str, float]:
    from search.run.runner import run_worker
    from search.spec.parse import Budget, EnqueuedTrial, PrunerSpec, load_spec
    from search.study.studies import prepare_study

    base = load_spec("transformer")
    good = next(e for e in base.enqueue if e.label == "reference-default")
    spec = dataclasses.replace(
        base,
        name="bench-harness",
        dataset="synth-small",
        budget=Budget(n_trials=N_TRIALS, max_epochs=EPOCHS),
        pruner=PrunerSpec(name="none"),  # every trial runs all its epochs: a like-for-like denominator
        enqueue=tuple(EnqueuedTrial(f"good-{i}", good.params) for i in range(N_TRIALS)),
    )
    prepare_study(spec, None)  # one-off: dataset, journal, MLflow store, parent run

    from training.loop import train

    training_s = 0.0
    callback_s = 0.0

    class Timed:
        """A trial's callback, timed: MLflow logging and trial.report run inside the loop's time, as
        callbacks, and are moved out of it."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            real = getattr(self.inner, name)
            if not name.startswith("on_"):
                return real

            def hook(*args):
                nonlocal callback_s
                start = time.perf_counter()
                try:
                    return real(*args)
                finally:
                    callback_s += time.perf_counter() - start

            return hook

    def timed_train(config, out_dir, *, callbacks, resume_from=None):
        nonlocal training_s
        start = time.perf_counter()
        try:
            return train(config, out_dir, callbacks=[Timed(c) for c in callbacks], resume_from=resume_from)
        finally:
            training_s += time.perf_counter() - start

    start = time.perf_counter()
    run_worker(spec, N_TRIALS, None, train_fn=timed_train)
    wall = time.perf_counter() - start
    overhead = wall - (training_s - callback_s)
    return {
        "harness_overhead_fraction": round(overhead / wall, 4),
        "harness_overhead_s_per_trial": round(overhead / N_TRIALS, 3),
        "harness_bench_trial_s": round(wall / N_TRIALS, 2),
    }


if __name__ == "__main__":
    print(run())
