"""The training loop on real formulas (a slice of ../shared/data/im2latex-sample), tiny models, CPU."""

from __future__ import annotations

import math

import pytest
import torch

from models import list_models
from tests.training._helpers import Recorder, tiny_config
from training import loop as loop_module
from training import step as step_module
from training.checkpoint import load_checkpoint
from training.config import load_train_config
from training.errors import NonFiniteLossError
from training.evaluate import EvalResult
from training.loop import train

EPOCH_KEYS = {"epoch", "train/loss", "lr", "images_per_s", "gpu_peak_mem_mb", "epoch_time_s"}
CPU_KEYS = {"train/skipped_steps"}  # where the loop checks gradients (training.precision)
VAL_KEYS = {f"val/{k}" for k in ("loss", "bleu4", "exact_match", "exprate_le1", "exprate_le2", "edit_score",
                                  "avg_score", "token_accuracy")}
TIMING_KEYS = {"images_per_s", "epoch_time_s"}


@pytest.mark.slow
def test_overfit_run_lowers_loss_and_reaches_avg_score_90(overfit_run):
    result, recorder, _ = overfit_run
    losses = [row["train/loss"] for row in result.history]
    assert losses[-1] < 0.25 * losses[0]
    assert result.best_metrics["val/avg_score"] >= 90, result.sample_predictions
    assert result.best_metrics["val/avg_score"] == max(r.get("val/avg_score", -1) for r in result.history)
    # every epoch reports the contract's keys; validated epochs add the val/* keys
    every_epoch = EPOCH_KEYS | (CPU_KEYS if recorder.started["device"] == "cpu" else set())
    for row in result.history:
        expected = every_epoch | (VAL_KEYS if row["epoch"] % 20 == 0 else set())
        assert set(row) == expected
    assert [e for e, _ in recorder.epochs] == list(range(1, 81))
    # 8 images at batch 8: one optimizer step an epoch, each reported as step 1 of 1
    assert recorder.batches == [(e, 1, 1) for e in range(1, 81)]
    assert recorder.ended is result and recorder.started["train_size"] == 8
    assert {"id", "reference", "prediction"} == set(result.sample_predictions[0])
    best = load_checkpoint(result.best_checkpoint)  # weights_only=True inside
    assert best["metrics"]["val/avg_score"] == result.best_metrics["val/avg_score"]
    assert load_train_config(best["config"]).trainer.epochs == 80
    speed = result.decode_speed  # best.pt's greedy decoding, timed once training ends
    assert set(speed) == {"decode/ms_per_formula", "decode/formulas_per_s"}
    assert speed["decode/ms_per_formula"] > 0 and speed["decode/formulas_per_s"] > 0


def test_decode_speed_decodes_the_first_n_validation_images_one_by_one_then_batched(
    overfit_data, monkeypatch
):
    from data_prep.dataset import build_loader
    from data_prep.vocab import Vocab
    from models import build_model
    from training import decode_speed

    vocab = Vocab.load(overfit_data / "vocab.json")
    model = build_model(load_train_config(tiny_config(overfit_data)).model, len(vocab))
    loader = build_loader(overfit_data, "validate", vocab, 4)
    calls = []

    def counting(model, images, *, max_len, stop_at_eos=True):
        calls.append((len(images), max_len, stop_at_eos))
        return None

    monkeypatch.setattr(decode_speed, "greedy_decode", counting)
    speed = decode_speed.measure_decode_speed(model, loader, torch.device("cpu"), n_formulas=6, max_len=9)
    assert set(speed) == {"decode/ms_per_formula", "decode/formulas_per_s"}
    warm = [c for c in calls if c[1] == decode_speed.WARM_UP_TOKENS]
    timed = [c for c in calls if c[1] == 9]
    assert len(warm) + len(timed) == len(calls) and all(stop for _, _, stop in timed)
    assert calls[: len(warm)] == warm  # every shape warmed up before the clock starts
    batch_sizes = [n for n, _, _ in timed[6:]]
    # each timed batch shape (and its batch-1 shape) was warmed: a batch of n and a batch of 1 per batch
    assert sorted(n for n, _, _ in warm) == sorted([1] * len(batch_sizes) + batch_sizes)
    assert timed[:6] == [(1, 9, True)] * 6  # batch 1, the first six images
    assert sum(batch_sizes) == 6 and max(batch_sizes) > 1  # then in loader batches
    assert not decode_speed.measure_decode_speed(model, loader, torch.device("cpu"), n_formulas=0, max_len=9)


def _comparable(history):
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


def test_resume_continues_the_same_run(overfit_data, tmp_path):
    # augmentation on, so the resumed run must also reproduce the augmentation draws
    cfg = load_train_config(tiny_config(overfit_data, augment={"enabled": True, "mixup_prob": 0.5},
                                        trainer={"epochs": 3}))
    straight = train(cfg, tmp_path / "straight")
    interrupted = Recorder(stop_at=2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", callbacks=[interrupted])
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 2
    again = Recorder()
    last = tmp_path / "resumed" / "last.pt"
    resumed = train(cfg, tmp_path / "resumed", resume_from=last, callbacks=[again])
    assert again.started["start_epoch"] == 3 and [e for e, _ in again.epochs] == [3]
    assert [row["epoch"] for row in again.started["history"]] == [1, 2], "the done epochs, for a study"
    assert _comparable(resumed.history) == _comparable(straight.history)
    a = load_checkpoint(straight.last_checkpoint)["model"]
    b = load_checkpoint(resumed.last_checkpoint)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _without_batchnorm(build, initial: list):
    """BatchNorm normalises each micro-batch by its own statistics, so only a model without it can take
    exactly the same step with and without accumulation; swap it out to test the loss arithmetic."""

    def builder(config, vocab_size):
        model = build(config, vocab_size)
        for module in list(model.modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, torch.nn.BatchNorm2d):
                    setattr(module, child_name, torch.nn.Identity())
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        initial.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    return builder


def test_gradient_accumulation_takes_the_same_step(overfit_data, tmp_path, monkeypatch):
    initial: list = []
    monkeypatch.setattr(loop_module, "build_model", _without_batchnorm(loop_module.build_model, initial))
    weights = []
    for accum in (1, 3):  # 3: micro-batches of 2 that need not divide a bucket's batch
        # SGD: the step is linear in the gradient (Adam's first step would amplify rounding noise)
        trainer = {"epochs": 1, "batch_size": 8, "grad_accum_steps": accum, "grad_clip": 0.0}
        cfg = load_train_config(tiny_config(overfit_data, optim={"name": "sgd", "lr": 0.5}, trainer=trainer))
        result = train(cfg, tmp_path / f"accum{accum}")
        weights.append(load_checkpoint(result.last_checkpoint)["model"])
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=1e-4, atol=1e-6)
    moved = max(float((weights[0][k] - initial[0][k]).abs().max()) for k in weights[0])
    assert moved > 1e-3  # the steps did change the weights


def test_nan_loss_raises_non_finite_loss_error(overfit_data, tmp_path, monkeypatch):
    monkeypatch.setattr(step_module, "token_loss_sum", lambda logits, tgt, ls: logits.sum() * math.nan)
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 1"):
        train(load_train_config(tiny_config(overfit_data)), tmp_path / "nan")


def test_out_of_memory_propagates_unchanged(overfit_data, tmp_path, monkeypatch):
    def oom(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(step_module, "token_loss_sum", oom)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="simulated"):
        train(load_train_config(tiny_config(overfit_data)), tmp_path / "oom")


def test_early_stopping_stops_after_patience_validations(overfit_data, tmp_path, monkeypatch):
    scores = iter([10.0, 30.0, 20.0, 30.0, 25.0, 99.0, 99.0])  # best at the 2nd validation, then 3 worse

    def fake_evaluate(*args, **kwargs):
        keys = ("loss", "bleu4", "exact_match", "exprate_le1", "exprate_le2", "edit_score", "token_accuracy")
        metrics = dict.fromkeys(keys, 0.0)
        return EvalResult({**metrics, "avg_score": next(scores)})

    monkeypatch.setattr(loop_module, "evaluate", fake_evaluate)
    cfg = load_train_config(tiny_config(overfit_data, trainer={"epochs": 7, "early_stopping_patience": 3}))
    result = train(cfg, tmp_path / "early")
    assert result.stopped_early and [row["epoch"] for row in result.history] == [1, 2, 3, 4, 5]
    assert result.best_metrics["epoch"] == 2 and result.best_metrics["val/avg_score"] == 30.0
    assert load_checkpoint(result.best_checkpoint)["epoch"] == 2


SMALL_MODELS = {
    "transformer": {"d_model": 32, "nhead": 2, "num_layers": 1, "dim_feedforward": 64, "cut_after": 2},
    "rnn": {"cnn_channels": [8, 16, 16, 16], "cnn_pools": ["2x2", "2x2", "2x1", "1x1"], "encoder_hidden": 16,
            "embed_dim": 16, "decoder_hidden": 32, "dropout": 0.0},
}


@pytest.mark.parametrize("kind", list_models())
def test_every_model_family_trains_with_mixup_accumulation_and_beam_validation(kind, overfit_data, tmp_path):
    data = tiny_config(overfit_data, augment={"enabled": True, "mixup_prob": 1.0},
                       trainer={"epochs": 1, "grad_accum_steps": 2, "val_decode": "beam", "beam_width": 2})
    data["model"] = {"kind": kind, "max_output_len": 30, **SMALL_MODELS.get(kind, {})}
    cfg = load_train_config(data)
    result = train(cfg, tmp_path / kind)
    row = result.history[0]
    assert math.isfinite(row["train/loss"]) and 0 <= row["val/avg_score"] <= 100
    assert load_train_config(load_checkpoint(result.best_checkpoint)["config"]).model.kind == kind


def test_a_split_without_formulas_is_refused_before_training(tmp_path):
    from data_prep.importers import import_dataset
    from tests.data_prep._ingest_fixtures import make_course

    data = import_dataset("course", make_course(tmp_path / "src"), tmp_path / "course", workers=0)
    cfg = load_train_config(tiny_config(data, data={"val_split": "test"}))
    with pytest.raises(ValueError, match="split 'test' has no formulas"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "best.pt").exists()


def test_the_logged_lr_is_the_rate_the_epoch_trained_at(overfit_data, tmp_path):
    schedule = {"name": "multistep", "step_every": 1, "gamma": 0.5}
    cfg = load_train_config(tiny_config(overfit_data, schedule=schedule, trainer={"epochs": 3}))
    result = train(cfg, tmp_path / "run")
    lr = cfg.optim.lr
    assert [row["lr"] for row in result.history] == pytest.approx([lr, lr / 2, lr / 4])


def test_resuming_onecycle_with_more_epochs_is_refused_clearly(overfit_data, tmp_path):
    onecycle = {"name": "onecycle"}
    train(load_train_config(tiny_config(overfit_data, schedule=onecycle, trainer={"epochs": 1})), tmp_path)
    longer = load_train_config(tiny_config(overfit_data, schedule=onecycle, trainer={"epochs": 2}))
    with pytest.raises(ValueError, match="cannot resume a onecycle run with trainer.epochs=2"):
        train(longer, tmp_path, resume_from=tmp_path / "last.pt")


def test_micro_batches_never_leave_a_lone_image():
    from training.step import micro_batches

    assert micro_batches(17, 16) == [(0, 17)]
    assert micro_batches(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert micro_batches(9, 4) == [(0, 4), (4, 9)]
    assert micro_batches(1, 4) == [(0, 1)]


def test_a_lone_image_with_1x1_features_sits_out_and_each_shape_is_encoded_once():
    from types import SimpleNamespace

    from training.loop import _Run

    class Encoder(torch.nn.Module):
        calls = 0

        def encode(self, images):  # features shrink 32x: a 32x32 image has one position, 64x64 four
            Encoder.calls += 1
            h, w = images.shape[-2] // 32, images.shape[-1] // 32
            return torch.zeros(1, h * w, 8)

    run = object.__new__(_Run)
    run.model, run.device, run.lone_untrainable = Encoder(), torch.device("cpu"), {}
    small, large = (SimpleNamespace(images=torch.zeros(1, 1, side, side)) for side in (32, 64))
    assert [run._lone_image_untrainable(b) for b in (small, large, small, large, small)] == [
        True, False, True, False, True]  # fmt: skip
    assert Encoder.calls == 2 and run.model.training
