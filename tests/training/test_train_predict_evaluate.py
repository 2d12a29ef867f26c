"""predict keeps input order with unreadable images; evaluate and train commands (python -m training ...)."""

from __future__ import annotations

import json

import pytest

from tests.training._helpers import tiny_config
from training.cli import main
from training.predict import list_images, predict_images


@pytest.mark.slow
def test_predict_keeps_order_and_leaves_unreadable_images_empty(overfit_run, overfit_data, tmp_path):
    result, _, _ = overfit_run
    expected = {row["id"]: row["prediction"] for row in result.sample_predictions}
    names = sorted(expected)[:3]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    listed = [overfit_data / "images" / names[0], corrupt, overfit_data / "images" / names[1],
              tmp_path / "missing.png", overfit_data / "images" / names[2]]
    list_file = tmp_path / "images.txt"
    list_file.write_text("\n".join(str(p) for p in listed) + "\n")
    out = tmp_path / "out" / "results.txt"

    assert main(["predict", "--checkpoint", str(result.best_checkpoint), "--images", str(list_file),
                 "--out", str(out), "--no-progress"]) == 0

    lines = out.read_text().split("\n")
    assert lines[-1] == "" and len(lines) == 6  # five inputs, newline-terminated
    assert lines[:5] == [expected[names[0]], "", expected[names[1]], "", expected[names[2]]]
    rows = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["error"] is None for r in rows] == [True, False, True, False, True]
    assert rows[0]["id"] == names[0] and rows[0]["score"] <= 0.0


@pytest.mark.slow
def test_predict_reads_a_folder_in_sorted_name_order(overfit_run, overfit_data):
    result, _, _ = overfit_run
    paths = list_images(overfit_data / "images")
    assert [p.name for p in paths] == sorted(p.name for p in (overfit_data / "images").iterdir())
    rows = predict_images(result.best_checkpoint, paths, progress=False)
    assert [r.id for r in rows] == [p.name for p in paths]


@pytest.mark.slow
def test_evaluate_reproduces_the_runs_validation_score(overfit_run, overfit_data, tmp_path, capsys):
    result, _, _ = overfit_run
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(result.best_checkpoint), "--data", str(overfit_data),
                 "--split", "validate", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == metrics
    assert metrics["avg_score"] == pytest.approx(result.best_metrics["val/avg_score"])
    assert metrics["loss"] == pytest.approx(result.best_metrics["val/loss"], rel=1e-4)
    assert metrics["num_samples"] == 8


@pytest.mark.slow
def test_evaluate_encodes_each_batch_once_and_scores_as_two_passes_did(overfit_run, overfit_data):
    """The teacher-forced loss and the greedy decoding share one encoder pass per batch; the figures are
    those of a separate forward pass and a separate decode."""
    import torch

    from data_prep.dataset import build_loader
    from models.decoding import greedy_decode
    from training.checkpoint import load_model
    from training.evaluate import evaluate
    from training.losses import count_tokens, token_loss_sum, trim_targets

    result, _, _ = overfit_run
    model, vocab, _ = load_model(result.best_checkpoint, torch.device("cpu"))
    loader = build_loader(overfit_data, "validate", vocab, 3, shuffle=False)
    loss_sum, n_tokens, expected = 0.0, 0, []
    with torch.no_grad():
        for batch in loader:
            targets = trim_targets(batch.targets, model.config.max_output_len)
            loss_sum += float(token_loss_sum(model(batch.images, targets[:, :-1]), targets[:, 1:], 0.0))
            n_tokens += count_tokens(targets)
            expected += [vocab.decode(s) for s in greedy_decode(model, batch.images).sequences]

    encode, calls = model.encode, []
    model.encode = lambda images: calls.append(len(images)) or encode(images)
    scored = evaluate(model, loader, vocab, device=torch.device("cpu"), amp=False)

    assert calls == [len(batch.images) for batch in loader]  # once per batch, not twice
    assert [p.prediction for p in scored.predictions] == expected
    assert scored.metrics["loss"] == pytest.approx(loss_sum / n_tokens, rel=1e-5)


def test_train_command_prints_the_best_checkpoint_last(overfit_data, tmp_path, capsys, isolated_home):
    from training.config import load_train_config, save_train_config

    config = tmp_path / "tiny.yaml"
    save_train_config(load_train_config(tiny_config(overfit_data)), config)
    assert main(["train", str(config), "--set", "trainer.epochs=1", "--out", str(tmp_path / "run")]) == 0
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert last_line == str(tmp_path / "run" / "best.pt")
    saved = load_train_config(tmp_path / "run" / "config.yaml")
    assert saved.trainer.epochs == 1


def test_train_command_reports_a_config_mistake_without_a_traceback(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("trainer: {epoch: 2}\n")
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "unknown key trainer.epoch" in err and "epochs" in err and "Traceback" not in err


def test_predict_applies_auto_bucket_options_without_padding_to_a_list():
    """A dataset prepared with `--buckets auto` records buckets: "auto"; predict crops and scales new
    images the same way and leaves them unpadded (any size suits the encoder)."""
    import numpy as np

    from data_prep.buckets import AUTO
    from data_prep.images import process_gray
    from training.predict import image_options

    options = image_options({"buckets": "auto", "downsample": 2, "margin": 4, "crop": True})
    assert options.buckets == AUTO and options.downsample == 2
    page = np.full((100, 300), 255, np.uint8)
    page[40:60, 50:250] = 0
    assert process_gray(page, options).shape == (14, 104)  # (20 + 8) / 2 x (200 + 8) / 2, no bucket
    listed = image_options({"buckets": [[240, 50], [400, 100]]})
    assert listed.buckets == ((240, 50), (400, 100))
