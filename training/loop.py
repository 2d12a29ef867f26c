"""The one training loop, shared by study trials and retraining an exported config.

    python -m training train CONFIG.yaml [--set trainer.epochs=3 ...]
    from training.loop import train; result = train(load_train_config("cfg.yaml"), "runs/x")

Each epoch: bucketed, shuffled batches of `trainer.batch_size` images; each batch is cut into
`grad_accum_steps` micro-batches whose summed token losses are divided by the whole batch's token count, so
accumulation changes memory, not the step (training.step). Mixed precision as the device does it best
(training.precision: bf16, fp16 with loss scaling, or fp32), gradient clipping, one optimizer and scheduler
step per batch; the loss is read back every few steps, not every step. Every `eval_every` epochs (and
after the last) the validation split is scored (training.evaluate); the epoch best on `trainer.monitor`
(default val/avg_score, max) is kept in `best.pt`, the resume point in `last.pt` (training.run_state).

Per-epoch metrics (history rows, callbacks, MLflow): `epoch`, `train/loss`, `lr`, `images_per_s`
(training images per second, loader included), `gpu_peak_mem_mb`, `epoch_time_s` (validation included),
`train/skipped_steps` (optimizer steps skipped for non-finite gradients; only where they are checked, on
the CPU in bf16/fp32: training.precision) and, on validated epochs, `val/loss`, `val/bleu4`,
`val/exact_match`, `val/exprate_le1`, `val/exprate_le2`, `val/edit_score`, `val/avg_score`,
`val/token_accuracy`. Training ends by timing best.pt's decoding.
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

from data_prep.dataset import build_loader
from data_prep.manifest import load_manifest
from data_prep.vocab import Vocab
from models import build_model
from training import checkpoint as ckpt_io
from training import run_state
from training.callbacks import Callback
from training.config import VAL_KEYS, TrainConfig, save_train_config
from training.decode_speed import measure_decode_speed
from training.evaluate import evaluate
from training.optim import build_optimizer
from training.precision import StepScaler, choose_precision
from training.runtime import (
    configure_cudnn,
    loader_workers,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
    seed_everything,
    shutdown_loader_iterator,
    to_device,
)
from training.schedules import build_schedule
from training.step import LossMeter, StepSetup, train_step

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
    config: TrainConfig,
    out_dir: str | Path,
    *,
    callbacks: Sequence[Callback] = (),
    resume_from: str | Path | None = None,
) -> TrainResult:
    """Train `config`, writing best.pt, last.pt and config.yaml into `out_dir`.

    `resume_from` (a last.pt, usually `out_dir`'s) continues that run (epoch counter, optimizer, scheduler,
    RNG and best-so-far), or starts fresh when the file does not exist; callbacks see the epochs it had done
    as `info["history"]` in on_train_start. Exceptions (callbacks', `NonFiniteLossError`,
    `torch.cuda.OutOfMemoryError`) propagate unchanged after progress bars and loader workers are closed.
    """
    run = _Run(config, Path(out_dir), list(callbacks))
    try:
        return run.fit(None if resume_from is None else Path(resume_from))
    finally:
        run.close()


class _Run:
    def __init__(self, config: TrainConfig, out_dir: Path, callbacks: list[Callback]):
        self.cfg, self.out_dir, self.callbacks = config, out_dir, callbacks
        t, d = config.trainer, config.data
        self.device = resolve_device(t.device)
        seed_everything(t.seed)
        root = resolve_dataset(d.dataset)
        self.vocab = Vocab.load(Path(root) / "vocab.json")
        pin = d.pin_memory and self.device.type == "cuda"
        workers = loader_workers(d.num_workers, self.device)
        common = dict(num_workers=workers, pin_memory=pin, use_cache=d.use_cache, seed=t.seed)
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
        model = build_model(config.model, len(self.vocab))
        self.precision = choose_precision(self.device, t.amp, type(model).cpu_bf16)
        self.model = to_device(model, self.device, channels_last=self.precision.mode != "fp32")
        self.optimizer = build_optimizer(self.model, config.optim)
        self.schedule = build_schedule(
            self.optimizer, config.schedule, len(self.train_loader), t.epochs, t.monitor_mode
        )
        self.step = StepSetup(
            device=self.device, precision=self.precision, scaler=StepScaler(self.precision, self.device),
            micro_batch=config.micro_batch_size, max_output_len=config.model.max_output_len,
            label_smoothing=config.loss.label_smoothing, grad_clip=t.grad_clip, augment=config.augment,
            mix_generator=torch.Generator().manual_seed(t.seed + 1),
        )
        shapes = len(self.train_loader.batch_sampler.buckets)
        cudnn_tuned = configure_cudnn(self.device, shapes)
        self.lone_untrainable: dict[tuple[int, ...], bool] = {}  # by image shape: it alone decides
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
            "precision": self.precision.mode, "loader_workers": workers,
        }
        logger.info("%s: %s (%s); %d loader worker(s)%s", self.device, self.precision.mode,
                    self.precision.reason, workers,
                    f"; cuDNN autotuning {'on' if cudnn_tuned else 'off'} ({shapes} image sizes)"
                    if self.device.type == "cuda" else "")
        self.best_path, self.last_path = out_dir / "best.pt", out_dir / "last.pt"

    # -- the epoch loop -------------------------------------------------------------------------------
    def fit(self, resume_from: Path | None) -> TrainResult:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_train_config(self.cfg, self.out_dir / "config.yaml", header="resolved config of this run")
        if resume_from is not None:
            run_state.restore(self, resume_from)
        self.info["start_epoch"] = self.epoch + 1
        self.info["history"] = list(self.history)  # a resumed run's done epochs (a study reports them again)
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
                run_state.save_last(self)
            for cb in self.callbacks:
                cb.on_epoch_end(epoch, dict(metrics))
        if not self.last_path.exists():
            run_state.save_last(self)
        result = TrainResult(self.best_path, self.last_path, dict(self.best_metrics), list(self.history),
                             list(self.info["sample_predictions"]), self.stopped_early, self._decode_speed())
        for cb in self.callbacks:
            cb.on_train_end(result)
        return result

    def _decode_speed(self) -> dict[str, float]:
        n = self.cfg.trainer.decode_speed_formulas
        if n <= 0 or not self.best_path.exists():
            return {}
        self.model.load_state_dict(ckpt_io.load_checkpoint(self.best_path)["model"])
        return measure_decode_speed(self.model, self.val_loader, self.device, n_formulas=n,
                                    max_len=self.cfg.trainer.val_max_len, amp=self.cfg.trainer.amp)

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
        meter, steps = LossMeter(self.device), len(self.train_loader)
        scaler, skipped_before = self.step.scaler, self.step.scaler.skipped
        images, start = 0, time.perf_counter()
        iterator = iter(self.train_loader)
        try:
            for step, batch in enumerate(iterator, 1):
                if len(batch) == 1 and self._lone_image_untrainable(batch):
                    continue
                loss = train_step(self.model, batch, self.optimizer, self.step)
                scaler.raise_if_diverged(epoch, step)
                self.schedule.step_batch()
                images += len(batch)
                read = meter.add(loss, epoch, step, last_step=step == steps)
                bar.update(1)
                rate = images / max(1e-9, time.perf_counter() - start)
                if read is not None and (step % 10 == 0 or meter.every > 1 or step == steps):
                    bar.set_postfix(loss=f"{read:.3f}", lr=f"{self._lr():.2e}", img_s=f"{rate:.0f}")
                for cb in self.callbacks:
                    cb.on_batch_end(epoch, step, len(self.train_loader), rate)
        finally:
            shutdown_loader_iterator(iterator)
            iterator = None
            bar.close()
        elapsed = time.perf_counter() - start
        meter.flush(epoch, steps)  # when the epoch's last batch was a skipped lone image
        metrics = {
            "epoch": epoch,
            "train/loss": meter.mean,
            "lr": epoch_lr,
            "images_per_s": images / max(1e-9, elapsed),
            "gpu_peak_mem_mb": peak_memory_mb(self.device),
        }
        if scaler.checks_gradients:  # elsewhere nothing is counted, and a 0 would claim none were skipped
            metrics["train/skipped_steps"] = skipped = scaler.skipped - skipped_before
            if skipped:
                logger.warning("epoch %d: skipped %d optimizer step(s) whose gradients were not finite "
                               "(inf/NaN), the weights left as they were; if it recurs, lower optim.lr, "
                               "enable trainer.grad_clip, or set trainer.amp: false", epoch, skipped)
        return metrics

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
        value per channel, so the image sits this step out (every other image of the epoch still trains).
        The answer is the shape's, found once: small runs meet a lone image in most steps of every epoch."""
        shape = tuple(batch.images.shape[1:])
        if shape not in self.lone_untrainable:
            with torch.no_grad():
                self.model.eval()
                try:
                    memory = self.model.encode(batch.images.to(self.device))  # (1, S, E)
                finally:
                    self.model.train()
            self.lone_untrainable[shape] = memory.shape[1] <= 1
        if self.lone_untrainable[shape]:
            logger.debug("skipped a lone %s image: its features are 1x1", shape[-2:])
        return self.lone_untrainable[shape]

    def _validate(self, epoch: int) -> dict[str, float]:
        t = self.cfg.trainer
        result = evaluate(
            self.model, self.val_loader, self.vocab, device=self.device, amp=t.amp,
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
            ckpt_io.save_checkpoint(self.best_path, run_state.model_payload(self, epoch, metrics))
        else:
            self.bad_evals += 1
        patience = t.early_stopping_patience
        if patience > 0 and self.bad_evals >= patience:
            logger.info("early stopping at epoch %d: no better %s in %d validations", epoch, t.monitor,
                        self.bad_evals)
            self.stopped_early = True

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def close(self) -> None:
        # Drop the big objects so a caller that catches an OOM can free GPU memory once it lets go of us.
        self.model = self.optimizer = self.schedule = None
        self.train_loader = self.val_loader = None


def resolve_dataset(name_or_path: str | Path) -> Path:
    """`data.dataset` -> a prepared folder (data_prep.ensure renders a missing built-in synthetic one)."""
    from data_prep.ensure import ensure_dataset

    return Path(ensure_dataset(name_or_path))


def _log_epoch(metrics: dict[str, float], epochs: int, monitor: str, best: float) -> None:
    val = f", val/loss {metrics['val/loss']:.4f}, val/avg_score {metrics['val/avg_score']:.2f}, best " \
        f"{monitor} {best:.4g}" if monitor in metrics else ""
    logger.info("epoch %d/%d: train/loss %.4f%s, lr %.2e, %.1f img/s, %.1f s", metrics["epoch"], epochs,
                metrics["train/loss"], val, metrics["lr"], metrics["images_per_s"], metrics["epoch_time_s"])


__all__ = ["TrainResult", "train"]
