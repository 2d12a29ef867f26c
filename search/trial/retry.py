"""Where a trial trains, what it resumes, and its one retry after running out of memory.

A rerun of a trial cut short (Ctrl-C, SIGTERM, a dead worker) trains in that trial's folder and continues
from its last.pt. A trial that runs out of memory is retried once with gradient accumulation doubled (the
same effective batch in half-size steps), from the last.pt its done epochs left; a second out-of-memory
prunes it with reason `oom`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from core.paths import runs_dir
from core.typed_config import set_path, to_dict
from search.spec.space import ACCUM_PATH
from search.study.devices import release_gpu_memory
from search.trial.reporting import PruneTrial
from training.config import TrainConfig, load_train_config
from training.cuda_faults import is_out_of_memory

log = logging.getLogger(__name__)

TrainFn = Callable[..., Any]  # training.loop.train's signature: (config, out_dir, *, callbacks, resume_from)


def resume_point(trial: optuna.Trial, study_name: str) -> tuple[Path, Path | None]:
    """The folder the trial trains in and the last.pt it continues from (None: a fresh start)."""
    own = runs_dir() / "studies" / study_name / f"trial-{trial.number:04d}"
    source = trial.user_attrs.get("requeued_from")
    cut = None
    if source is not None:  # most trials: no storage read
        cut = next((t for t in trial.study.get_trials(deepcopy=False) if t.number == source), None)
    if cut is not None:
        folder = Path(cut.user_attrs.get("trial_dir", own.with_name(f"trial-{source:04d}")))
        if (folder / "last.pt").exists():
            log.info("trial %d continues trial %d (%s)", trial.number, source, folder / "last.pt")
            return folder, folder / "last.pt"
    (own / "last.pt").unlink(missing_ok=True)  # a fresh trial must not continue a stale (older study's) one
    return own, None


def train_with_oom_retry(
    train_fn: TrainFn,
    trial: optuna.Trial,
    config: TrainConfig,
    callbacks: list[Any],
    last_epoch: Callable[[], int],
    run: Any,
) -> Any:
    out_dir, resume_from = resume_point(trial, trial.study.study_name)
    trial.set_user_attr("trial_dir", str(out_dir))
    for attempt in (0, 1):
        message = None
        try:
            return train_fn(config, out_dir, callbacks=callbacks, resume_from=resume_from)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # Outside the except block: its traceback held the failed step's frames and activations, which
        # the allocator could not have given back.
        release_gpu_memory()
        accum = config.trainer.grad_accum_steps * 2
        if attempt == 1 or config.trainer.batch_size % accum:
            trial.set_user_attr("oom_retries", attempt)
            raise PruneTrial("oom", last_epoch(), message)
        # the epochs done stay done (a spec with save_every_epoch: false has no last.pt: it starts over)
        resume_from = out_dir / "last.pt" if (out_dir / "last.pt").exists() else None
        where = " from its last.pt" if resume_from else ""
        log.warning("trial %d: out of memory (%s); retrying with grad_accum_steps=%d%s",
                    trial.number, message, accum, where)  # fmt: skip
        trial.set_user_attr("oom_retries", 1)
        if run is not None:
            run.set_tags({"search.oom_retry": accum})
        data = to_dict(config)
        set_path(data, ACCUM_PATH, accum)
        config = load_train_config(data)
        trial.set_user_attr("config", to_dict(config))
    raise AssertionError("unreachable")
