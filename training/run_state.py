"""What a training run writes into best.pt and last.pt, and how a resumed run reads last.pt back.

    payload = model_payload(run, epoch, metrics)     # best.pt: enough to predict
    save_last(run); restore(run, path)                    # last.pt: enough to continue the run exactly

Checkpoints are read onto the CPU whatever device the run trains on: `load_state_dict` copies weights and
optimizer state to where the parameters live, while the RNG states must stay host tensors (numpy's key
array, torch's CPU generator); read with `map_location="cuda"` they would land on the GPU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core import typed_config
from training import checkpoint as ckpt_io

logger = logging.getLogger(__name__)


def model_payload(run, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
    return {
        "model": run.model.state_dict(),
        "config": typed_config.to_dict(run.cfg),
        "vocab": list(run.vocab.id_to_token),
        "image_options": run.image_options,
        "ink_options": run.ink_options,
        "epoch": epoch,
        "metrics": dict(metrics),
    }


def save_last(run) -> None:
    payload = model_payload(run, run.epoch, run.history[-1] if run.history else {})
    payload.update(
        optimizer=run.optimizer.state_dict(),
        schedule=run.schedule.state_dict(),
        scaler=run.step.scaler.state_dict(),
        rng=ckpt_io.rng_state(),
        mix_generator=run.step.mix_generator.get_state(),
        history=run.history,
        best_score=run.best_score,
        best_metrics=run.best_metrics,
        bad_evals=run.bad_evals,
        stopped_early=run.stopped_early,
        sample_predictions=run.info["sample_predictions"],
    )
    ckpt_io.save_checkpoint(run.last_path, payload)


def restore(run, path: Path) -> None:
    """Continue `run` from the last.pt at `path` (model, optimizer, schedule, loss scale, RNGs,
    best-so-far)."""
    if not path.exists():
        logger.warning("resume: no %s yet, starting a fresh run", path)
        return
    state = ckpt_io.load_checkpoint(path, map_location="cpu")
    _warn_config_changes(state["config"], typed_config.to_dict(run.cfg))
    old_epochs = state["config"]["trainer"]["epochs"]
    if run.cfg.schedule.name == "onecycle" and old_epochs != run.cfg.trainer.epochs:
        # OneCycleLR fixes its total step count when built; its saved state cannot stretch
        raise ValueError(
            f"cannot resume a onecycle run with trainer.epochs={run.cfg.trainer.epochs} (it was "
            f"{old_epochs}): the one-cycle schedule is laid out over the run's length; resume with "
            f"trainer.epochs={old_epochs}, or start a new run"
        )
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])  # moves its state to the parameters' device
    run.schedule.load_state_dict(state["schedule"])
    run.step.scaler.load_state_dict(state.get("scaler") or {})
    ckpt_io.set_rng_state(state["rng"])
    run.step.mix_generator.set_state(state["mix_generator"].cpu())
    run.epoch, run.history = int(state["epoch"]), list(state["history"])
    run.best_score, run.best_metrics = float(state["best_score"]), dict(state["best_metrics"])
    run.bad_evals, run.stopped_early = int(state["bad_evals"]), bool(state["stopped_early"])
    run.info["sample_predictions"] = list(state.get("sample_predictions", []))
    logger.info("resumed %s at epoch %d (best %s %.4g)", run.out_dir, run.epoch, run.cfg.trainer.monitor,
                run.best_score)


def _warn_config_changes(saved: dict[str, Any], current: dict[str, Any]) -> None:
    old, new = typed_config.flatten(saved), typed_config.flatten(current)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        logger.warning("resume: the config differs from the checkpoint's in %s; using the new values",
                       ", ".join(changed))


__all__ = ["model_payload", "restore", "save_last"]
