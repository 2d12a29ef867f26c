"""TrainConfig: every knob of one training run, as typed dataclasses with a strict YAML round-trip.

    python -c "from training.config import load_train_config; print(load_train_config({}))"

Overrides stack: dataclass defaults -> YAML (or a dict) -> `key=value` strings (`trainer.epochs=3`).
Unknown or mistyped keys raise `core.typed_config.ConfigError` naming the dotted key and the valid keys.
Every value a study can sample is a scalar field here (Optuna samples scalars): e.g. the MultiStep schedule
takes either explicit `milestones` or a period `step_every`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core import typed_config
from core.paths import DEFAULT_DATASET
from core.typed_config import ConfigError
from data_prep.augment import AugmentConfig
from models import ModelConfig

# The names training.optim.OPTIMIZERS and training.schedules.SCHEDULES register (a test keeps them equal):
# a typo fails when the config loads, not minutes later when the run builds it.
OptimizerName = Literal["adamw", "adam", "sgd", "radam", "ranger"]
ScheduleName = Literal["multistep", "warmup_multistep", "warmup_cosine", "onecycle", "plateau", "constant"]


def _default_model() -> ModelConfig:
    # ModelConfig picks its subclass from `kind`; the reference model is the ResNet + Transformer.
    return typed_config.from_dict(ModelConfig, {"kind": "transformer"})


@dataclass
class DataConfig:
    dataset: str = DEFAULT_DATASET  # a name under data/ or a folder path (data_prep.ensure resolves it)
    max_formula_len: int | None = 150  # longer training formulas are skipped (validation keeps them all)
    num_workers: int | None = None  # None: loader workers on CUDA (training.runtime.loader_workers), 0 on CPU
    pin_memory: bool = True  # only takes effect on CUDA
    use_cache: bool = True
    train_split: str = "train"
    val_split: str = "validate"
    train_limit: int | None = None  # first N items of the split (quick runs, tests)
    val_limit: int | None = None


@dataclass
class OptimConfig:
    name: OptimizerName = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4  # never applied to 1-D parameters (norms, biases)
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    lookahead_k: int = 6  # ranger only
    lookahead_alpha: float = 0.5  # ranger only

    def __post_init__(self) -> None:
        # the one bounds check of the learning rate: a config, spec base or trial that sets it fails here,
        # when it loads, not after the dataset and model are built
        if not self.lr > 0:
            raise ConfigError(f"optim.lr={self.lr} must be > 0")


@dataclass
class ScheduleConfig:
    name: ScheduleName = "multistep"
    milestones: list[int] = field(default_factory=list)  # epochs; empty -> every `step_every` epochs
    step_every: int = 5  # the course halved the lr every 5 epochs
    gamma: float = 0.5
    warmup_epochs: float = 0.0  # warmup_* schedules: linear warmup from ~0 (fractions of an epoch allowed)
    min_lr_ratio: float = 0.0  # warmup_cosine: final lr = lr * min_lr_ratio
    onecycle_pct_start: float = 0.3
    onecycle_div_factor: float = 25.0
    onecycle_final_div_factor: float = 1e4
    plateau_factor: float = 0.5
    plateau_patience: int = 2  # evaluations without improvement of val/avg_score


@dataclass
class LossConfig:
    label_smoothing: float = 0.0  # cross-entropy ignores <PAD>


# What a validated epoch reports (as val/<key>): the metrics a run may monitor for best.pt, early
# stopping and the plateau schedule.
VAL_KEYS = ("loss", "bleu4", "exact_match", "edit_score", "avg_score", "token_accuracy")
MONITORABLE = tuple(f"val/{key}" for key in VAL_KEYS)


@dataclass
class TrainerConfig:
    epochs: int = 20
    batch_size: int = 16  # effective batch (one optimizer step)
    # micro-batches of batch_size // grad_accum_steps images (a few more of them when that does not divide
    # the batch): the same optimizer step on less memory, as losses are normalised by the batch's tokens
    grad_accum_steps: int = 1
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    eval_every: int = 1  # epochs between validations (the last epoch is always validated)
    # The metric that picks best.pt and drives early stopping and the plateau schedule; a study sets it to
    # its objective (search.spec.config_paths.base_config_dict): a trial is scored by its best epoch.
    monitor: str = "val/avg_score"
    monitor_mode: Literal["max", "min"] = "max"
    early_stopping_patience: int = 0  # validations without a better `monitor` before stopping; 0 = off
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto: bf16 where the device has it natively (CUDA 8.0+, CPUs with AMX/AVX512-BF16), fp16 on older GPUs,
    # else fp32; true forces mixed precision, false is fp32 (training.precision)
    amp: bool | Literal["auto"] = "auto"
    val_decode: Literal["greedy", "beam"] = "greedy"
    beam_width: int = 5
    length_penalty: float = 0.0
    val_max_len: int | None = None  # decode length cap; None -> the model's max_output_len
    val_batch_size: int = 0  # 0 -> twice the micro-batch (decoding keeps no activations for backward)
    num_sample_predictions: int = 8  # (id, reference, prediction) rows kept from the last validation
    decode_speed_formulas: int = 32  # validation images best.pt decodes, timed, when training ends; 0 = off
    progress: bool = True  # tqdm bars
    save_every_epoch: bool = True  # write last.pt after every epoch (resume point)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=_default_model)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self) -> None:
        t = self.trainer
        if t.grad_accum_steps < 1 or t.batch_size < 1:
            raise ConfigError(
                f"trainer.batch_size ({t.batch_size}) and trainer.grad_accum_steps ({t.grad_accum_steps}) "
                "must be >= 1"
            )
        if t.grad_accum_steps > t.batch_size:
            raise ConfigError(
                f"trainer.grad_accum_steps={t.grad_accum_steps} exceeds trainer.batch_size={t.batch_size}: "
                "a micro-batch needs at least one image"
            )
        if t.epochs < 1 or t.eval_every < 1:
            raise ConfigError(
                f"trainer.epochs ({t.epochs}) and trainer.eval_every ({t.eval_every}) must be >= 1"
            )
        if t.monitor not in MONITORABLE:
            raise ConfigError(f"trainer.monitor: {t.monitor!r} is not one of {list(MONITORABLE)}")

    @property
    def micro_batch_size(self) -> int:
        return self.trainer.batch_size // self.trainer.grad_accum_steps


def load_train_config(source: Path | str | dict[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
    """A TrainConfig from a YAML file or a dict, then `key=value` overrides (last wins)."""
    if isinstance(source, (str, Path)):
        data = typed_config.load_yaml(Path(source))
    else:
        data = typed_config.merge(source, {})  # a deep copy: overrides must not touch the caller's dict
    for text in overrides:
        key, value = typed_config.parse_override(text)
        typed_config.set_path(data, key, value)
    return typed_config.from_dict(TrainConfig, data)


def train_config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return typed_config.to_dict(cfg)


def save_train_config(cfg: TrainConfig, path: Path, header: str | None = None) -> str:
    """Write the resolved config as YAML (loadable by load_train_config); returns the text."""
    return typed_config.dump_yaml(cfg, Path(path), header=header)


__all__ = [
    "DataConfig",
    "OptimConfig",
    "ScheduleConfig",
    "LossConfig",
    "TrainerConfig",
    "TrainConfig",
    "load_train_config",
    "save_train_config",
    "train_config_to_dict",
]
