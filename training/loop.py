"""The one training loop, shared by study trials and retraining an exported config.

    python -m training train CONFIG.yaml [--set trainer.epochs=3 ...]
    from training.loop import train; result = train(load_train_config("cfg.yaml"), "runs/x")

Each epoch: bucketed, shuffled batches of `trainer.batch_size` images; each batch is cut into
`grad_accum_steps` micro-batches whose summed token losses are divided by the whole batch's token count, so
accumulation changes memory, not the step. bf16 autocast on CUDA, gradient clipping, one optimizer and
scheduler step per batch. Every `eval_every` epochs (and after the last) the validation split is scored
(training.evaluate); the epoch best on `trainer.monitor` (default val/avg_score, max) is kept in `best.pt`,
the resume point in `last.pt`.

Per-epoch metrics (history rows, callbacks, MLflow): `epoch`, `train/loss`, `lr`, `images_per_s`
(training images per second, loader included), `gpu_peak_mem_mb`, `epoch_time_s` (validation included)
and, on validated epochs, `val/loss`, `val/bleu4`, `val/exact_match`, `val/exprate_le1`, `val/exprate_le2`,
`val/edit_score`, `val/avg_score`, `val/token_accuracy`. Training ends by timing best.pt's decoding.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from core import typed_config
from data_prep.augment import mixup_batch
from data_prep.dataset import build_loader
from data_prep.manifest import load_manifest
from data_prep.vocab import Vocab
from models import build_model
from training import checkpoint as ckpt_io
from training.callbacks import Callback
from training.config import VAL_KEYS, TrainConfig, save_train_config
from training.decode_speed import measure_decode_speed
from training.errors import NonFiniteLossError
from training.evaluate import evaluate
from training.losses import count_tokens, token_loss_sum, trim_targets
from training.optim import build_optimizer
from training.runtime import (
    autocast,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
    seed_everything,
    shutdown_loader_iterator,
)
from training.schedules import build_schedule

logger = logging.getLogger(__name__)



@dataclass
class TrainResult:
    best_checkpoint: Path
    last_checkpoint: Path
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    sample_predictions: list[dict[str, str]] = field(default_factory=list)
    stopped_early: bool = False
    decode_speed: dict[str, float] = field(default_factory=dict)  # training.decode_speed, of best.pt


def train(
    config: TrainConfig, out_dir: str | Path, *, callbacks: Sequence[Callback] = (), resume: bool = False
) -> TrainResult:
    """Train `config`, writing best.pt, last.pt and config.yaml into `out_dir`.

    `resume=True` continues the run in `out_dir` from its last.pt (epoch counter, optimizer, scheduler, RNG
    and best-so-far), or starts fresh when there is none. Exceptions (callbacks', `NonFiniteLossError`,
    `torch.cuda.OutOfMemoryError`) propagate unchanged after progress bars and loader workers are closed.
    """
    run = _Run(config, Path(out_dir), list(callbacks))
    try:
        return run.fit(resume)
    finally:
        run.close()


class _Run:
    def __init__(self, config: TrainConfig, out_dir: Path, callbacks: list[Callback]):
        self.cfg, self.out_dir, self.callbacks = config, out_dir, callbacks
        t, d = config.trainer, config.data
        self.device = resolve_device(t.device)
        self.amp = t.amp and self.device.type == "cuda"
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # few distinct shapes (one per bucket): tuning pays off
        seed_everything(t.seed)
        root = resolve_dataset(d.dataset)
        self.vocab = Vocab.load(Path(root) / "vocab.json")
        pin = d.pin_memory and self.device.type == "cuda"
        common = dict(num_workers=d.num_workers, pin_memory=pin, use_cache=d.use_cache, seed=t.seed)
        self.train_loader = build_loader(root, d.train_split, self.vocab, t.batch_size,
                                         augment=config.augment, shuffle=True,
                                         max_formula_len=d.max_formula_len, limit=d.train_limit, **common)
        val_batch = t.val_batch_size or 2 * config.micro_batch_size
        self.val_loader = build_loader(root, d.val_split, self.vocab, val_batch, shuffle=False,
                                       limit=d.val_limit, **common)
        for split, loader in ((d.train_split, self.train_loader), (d.val_split, self.val_loader)):
            if len(loader.dataset) == 0:
                raise ValueError(f"dataset {root}: split {split!r} has no usable items")
            if not loader.dataset.has_formulas:  # e.g. the course's unlabelled test split
                raise ValueError(
                    f"dataset {root}: split {split!r} has no formulas to train or score on; "
                    "choose a labelled split (data.train_split / data.val_split)"
                )
        self.model = build_model(config.model, len(self.vocab)).to(self.device)
        self.optimizer = build_optimizer(self.model, config.optim)
        self.schedule = build_schedule(
            self.optimizer, config.schedule, len(self.train_loader), t.epochs, t.monitor_mode
        )
        self.mix_generator = torch.Generator().manual_seed(t.seed + 1)
        self.epoch, self.bad_evals, self.stopped_early = 0, 0, False
        self.best_score, self.best_metrics = -math.inf if t.monitor_mode == "max" else math.inf, {}
        self.history: list[dict[str, float]] = []
        manifest = load_manifest(root, required=False)
        # predict renders (pen input) and processes new inputs as the training data was; ink None: no pen
        options = manifest.get("options") or {}
        self.image_options, self.ink_options = options.get("image"), options.get("ink")
        self.info: dict[str, Any] = {
            "out_dir": str(out_dir), "device": str(self.device), "dataset": str(root),
            "dataset_hash": str(manifest.get("content_hash", "")),
            "num_parameters": self.model.num_parameters(),
            "train_size": len(self.train_loader.dataset), "val_size": len(self.val_loader.dataset),
            "steps_per_epoch": len(self.train_loader), "start_epoch": 1, "sample_predictions": [],
        }
        self.best_path, self.last_path = out_dir / "best.pt", out_dir / "last.pt"

    # -- the epoch loop -------------------------------------------------------------------------------
    def fit(self, resume: bool) -> TrainResult:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_train_config(self.cfg, self.out_dir / "config.yaml", header="resolved config of this run")
        if resume:
            self._restore()
        self.info["start_epoch"] = self.epoch + 1
        for cb in self.callbacks:
            cb.on_train_start(self.cfg, self.info)
        t = self.cfg.trainer
        for epoch in range(self.epoch + 1, t.epochs + 1):
            if self.stopped_early:
                break
            start = time.perf_counter()
            metrics = self._train_epoch(epoch)
            validated = epoch % t.eval_every == 0 or epoch == t.epochs
            if validated:
                metrics.update(self._validate(epoch))
            metrics["epoch_time_s"] = time.perf_counter() - start
            if validated:
                self._update_best(epoch, metrics)
            self.history.append(metrics)
            self.epoch = epoch
            _log_epoch(metrics, t.epochs, t.monitor, self.best_score)
            if t.save_every_epoch or epoch == t.epochs or self.stopped_early:
                self._save_last()
            for cb in self.callbacks:
                cb.on_epoch_end(epoch, dict(metrics))
        if not self.last_path.exists():
            self._save_last()
        result = TrainResult(self.best_path, self.last_path, dict(self.best_metrics), list(self.history),
                             list(self.info["sample_predictions"]), self.stopped_early, self._decode_speed())
        for cb in self.callbacks:
            cb.on_train_end(result)
        return result

    def _decode_speed(self) -> dict[str, float]:
        n = self.cfg.trainer.decode_speed_formulas
        if n <= 0 or not self.best_path.exists():
            return {}
        self.model.load_state_dict(ckpt_io.load_checkpoint(self.best_path, self.device)["model"])
        return measure_decode_speed(self.model, self.val_loader, self.device, n_formulas=n,
                                    max_len=self.cfg.trainer.val_max_len)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        t = self.cfg.trainer
        self.model.train()
        self.train_loader.batch_sampler.set_epoch(epoch)
        self._reseed_augmentation(epoch)
        reset_peak_memory(self.device)
        bar = tqdm(total=len(self.train_loader), desc=f"epoch {epoch}/{t.epochs}", disable=not t.progress,
                   leave=False, dynamic_ncols=True)
        # the rate this epoch starts at: the schedule may step before the epoch's metrics are read
        epoch_lr = self._lr()
        loss_total, batches, images, start = 0.0, 0, 0, time.perf_counter()
        iterator = iter(self.train_loader)
        try:
            for step, batch in enumerate(iterator, 1):
                if len(batch) == 1 and self._lone_image_untrainable(batch):
                    continue
                loss = self._train_step(batch, epoch, step)
                loss_total, batches, images = loss_total + loss, batches + 1, images + len(batch)
                bar.update(1)
                rate = images / max(1e-9, time.perf_counter() - start)
                if step % 10 == 0 or step == len(self.train_loader):
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self._lr():.2e}", img_s=f"{rate:.0f}")
                for cb in self.callbacks:
                    cb.on_batch_end(epoch, step, len(self.train_loader), rate)
        finally:
            shutdown_loader_iterator(iterator)
            iterator = None
            bar.close()
        elapsed = time.perf_counter() - start
        return {
            "epoch": epoch,
            "train/loss": loss_total / max(1, batches),
            "lr": epoch_lr,
            "images_per_s": images / max(1e-9, elapsed),
            "gpu_peak_mem_mb": peak_memory_mb(self.device),
        }

    def _reseed_augmentation(self, epoch: int) -> None:
        """Per-epoch seeds for the loader's worker seeds and the in-process augmenter, so a resumed run
        draws the same augmentations as an uninterrupted one (their RNGs are not in the checkpoint)."""
        seed = (self.cfg.trainer.seed * 1_000_003 + epoch) % 2**32
        generator = getattr(self.train_loader, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(seed)
        pipeline = getattr(getattr(self.train_loader.dataset, "transform", None), "pipeline", None)
        if hasattr(pipeline, "set_random_seed"):
            pipeline.set_random_seed(seed)

    def _lone_image_untrainable(self, batch) -> bool:
        """A bucket holding a single image, whose encoder features are 1x1: BatchNorm cannot normalise one
        value per channel, so the image sits this step out (every other image of the epoch still trains)."""
        with torch.no_grad():
            self.model.eval()
            try:
                memory = self.model.encode(batch.images.to(self.device))  # (1, S, E)
            finally:
                self.model.train()
        if memory.shape[1] > 1:
            return False
        logger.debug("skipped a lone %s image: its features are 1x1", tuple(batch.images.shape[-2:]))
        return True

    def _train_step(self, batch, epoch: int, step: int) -> float:
        """One optimizer step over a whole batch, in `grad_accum_steps` micro-batches."""
        cfg = self.cfg
        max_out = cfg.model.max_output_len
        images, targets = batch.images, trim_targets(batch.targets, max_out)
        mixed = mixup_batch(images, targets, cfg.augment, self.mix_generator)
        if mixed is None:
            parts = [(targets, 1.0)]
        else:
            images, parts = mixed.images, [(mixed.targets_a, mixed.lam), (mixed.targets_b, 1.0 - mixed.lam)]
        norms = [max(1, count_tokens(tgt)) for tgt, _ in parts]
        micro = cfg.micro_batch_size
        total = torch.zeros((), device=self.device)
        for lo, hi in micro_batches(len(images), micro):
            chunk = images[lo:hi].to(self.device, non_blocking=True)  # (b, 1, H, W)
            with autocast(self.device, self.amp):
                memory = self.model.encode(chunk)  # (b, S, E)
                loss = 0.0
                for (tgt, weight), norm in zip(parts, norms, strict=True):
                    tgt = trim_targets(tgt[lo:hi], max_out).to(self.device, non_blocking=True)
                    logits = self.model.decode(memory, tgt[:, :-1])  # (b, T-1, V)
                    loss = loss + weight * token_loss_sum(logits, tgt[:, 1:], cfg.loss.label_smoothing) / norm
            loss.backward()
            total += loss.detach()
        value = float(total)
        if not math.isfinite(value):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(epoch, step, value)
        if cfg.trainer.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.trainer.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step_batch()
        return value

    def _validate(self, epoch: int) -> dict[str, float]:
        t = self.cfg.trainer
        result = evaluate(
            self.model, self.val_loader, self.vocab, device=self.device, amp=self.amp,
            label_smoothing=self.cfg.loss.label_smoothing, method=t.val_decode, beam_width=t.beam_width,
            length_penalty=t.length_penalty, max_len=t.val_max_len, progress=t.progress,
            desc=f"validate {epoch}/{t.epochs}",
        )
        self.info["sample_predictions"] = result.samples(t.num_sample_predictions)
        # the ExpRates within 1 and 2 edits are reported beside exact_match but are no monitor choice
        metrics = {f"val/{key}": result.metrics[key] for key in (*VAL_KEYS, "exprate_le1", "exprate_le2")}
        self.schedule.step_validation(metrics[t.monitor])
        return metrics

    def _update_best(self, epoch: int, metrics: dict[str, float]) -> None:
        t = self.cfg.trainer
        score = metrics[t.monitor]
        if score > self.best_score if t.monitor_mode == "max" else score < self.best_score:
            self.best_score, self.best_metrics, self.bad_evals = score, dict(metrics), 0
            ckpt_io.save_checkpoint(self.best_path, self._model_payload(epoch, metrics))
        else:
            self.bad_evals += 1
        patience = t.early_stopping_patience
        if patience > 0 and self.bad_evals >= patience:
            logger.info("early stopping at epoch %d: no better %s in %d validations", epoch, t.monitor,
                        self.bad_evals)
            self.stopped_early = True

    # -- checkpoints ------------------------------------------------------------------------------------
    def _model_payload(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "config": typed_config.to_dict(self.cfg),
            "vocab": list(self.vocab.id_to_token),
            "image_options": self.image_options,
            "ink_options": self.ink_options,
            "epoch": epoch,
            "metrics": dict(metrics),
        }

    def _save_last(self) -> None:
        payload = self._model_payload(self.epoch, self.history[-1] if self.history else {})
        payload.update(
            optimizer=self.optimizer.state_dict(),
            schedule=self.schedule.state_dict(),
            rng=ckpt_io.rng_state(),
            mix_generator=self.mix_generator.get_state(),
            history=self.history,
            best_score=self.best_score,
            best_metrics=self.best_metrics,
            bad_evals=self.bad_evals,
            stopped_early=self.stopped_early,
            sample_predictions=self.info["sample_predictions"],
        )
        ckpt_io.save_checkpoint(self.last_path, payload)

    def _restore(self) -> None:
        if not self.last_path.exists():
            logger.warning("resume: no %s yet, starting a fresh run", self.last_path)
            return
        state = ckpt_io.load_checkpoint(self.last_path, map_location=self.device)
        _warn_config_changes(state["config"], typed_config.to_dict(self.cfg))
        old_epochs = state["config"]["trainer"]["epochs"]
        if self.cfg.schedule.name == "onecycle" and old_epochs != self.cfg.trainer.epochs:
            # OneCycleLR fixes its total step count when built; its saved state cannot stretch
            raise ValueError(
                f"cannot resume a onecycle run with trainer.epochs={self.cfg.trainer.epochs} (it was "
                f"{old_epochs}): the one-cycle schedule is laid out over the run's length; resume with "
                f"trainer.epochs={old_epochs}, or start a new run"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        ckpt_io.set_rng_state(state["rng"])
        self.mix_generator.set_state(state["mix_generator"].cpu())
        self.epoch, self.history = int(state["epoch"]), list(state["history"])
        self.best_score, self.best_metrics = float(state["best_score"]), dict(state["best_metrics"])
        self.bad_evals, self.stopped_early = int(state["bad_evals"]), bool(state["stopped_early"])
        self.info["sample_predictions"] = list(state.get("sample_predictions", []))
        logger.info("resumed %s at epoch %d (best %s %.4g)", self.out_dir, self.epoch,
                    self.cfg.trainer.monitor, self.best_score)

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def close(self) -> None:
        # Drop the big objects so a caller that catches an OOM can free GPU memory once it lets go of us.
        self.model = self.optimizer = self.schedule = None
        self.train_loader = self.val_loader = None


def micro_batches(n: int, micro: int) -> list[tuple[int, int]]:
    """(start, stop) of each micro-batch; a lone last image joins the one before it, since BatchNorm cannot
    train on a single image whose features are 1x1 (a deep encoder cut of a small crop)."""
    bounds = [(lo, min(lo + micro, n)) for lo in range(0, n, micro)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def resolve_dataset(name_or_path: str | Path) -> Path:
    """`data.dataset` -> a prepared folder (data_prep.ensure renders a missing built-in synthetic one)."""
    from data_prep.ensure import ensure_dataset

    return Path(ensure_dataset(name_or_path))


def _log_epoch(metrics: dict[str, float], epochs: int, monitor: str, best: float) -> None:
    val = f", val/loss {metrics['val/loss']:.4f}, val/avg_score {metrics['val/avg_score']:.2f}, best " \
        f"{monitor} {best:.4g}" if monitor in metrics else ""
    logger.info("epoch %d/%d: train/loss %.4f%s, lr %.2e, %.1f img/s, %.1f s", metrics["epoch"], epochs,
                metrics["train/loss"], val, metrics["lr"], metrics["images_per_s"], metrics["epoch_time_s"])


def _warn_config_changes(saved: dict[str, Any], current: dict[str, Any]) -> None:
    old, new = typed_config.flatten(saved), typed_config.flatten(current)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        logger.warning("resume: the config differs from the checkpoint's in %s; using the new values",
                       ", ".join(changed))


__all__ = ["TrainResult", "train"]
