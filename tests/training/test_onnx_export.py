"""`python -m training export-onnx` writes a Transformer checkpoint as ONNX; `predict --onnx` decodes on ONNX
Runtime the tokens PyTorch decodes, for any batch size and bucket."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.training._helpers import tiny_config
from training.cli import main
from training.onnx_export import OnnxPredictor, parity

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(overfit_data, tmp_path_factory):
    from training.config import load_train_config
    from training.loop import train

    work = tmp_path_factory.mktemp("onnx")
    result = train(load_train_config(tiny_config(overfit_data, trainer={"epochs": 3})), work / "run")
    out = work / "onnx"
    assert main(["export-onnx", "--checkpoint", str(result.best_checkpoint), "--out", str(out)]) == 0
    return result.best_checkpoint, work / "onnx", overfit_data


def test_the_folder_holds_both_graphs_and_what_decoding_needs(exported):
    checkpoint, folder, _ = exported
    meta = json.loads((folder / "model.json").read_text())
    assert (folder / "encoder.onnx").stat().st_size > 0 and (folder / "decoder_step.onnx").stat().st_size > 0
    from training.checkpoint import load_checkpoint

    assert meta["vocab"] == load_checkpoint(checkpoint)["vocab"]
    assert meta["layers"] == 1 and meta["heads"] == 2 and meta["image_options"]


def test_onnx_decodes_the_tokens_pytorch_decodes_at_any_batch_and_size(exported):
    checkpoint, folder, data = exported
    from data_prep.images import load_gray

    pixels = [load_gray(p) for p in sorted((data / "images").iterdir())]
    shapes = {p.shape for p in pixels}
    assert len(shapes) > 1, "the data should hold several bucket sizes"
    for batch_size in (1, 3, 32):
        result = parity(checkpoint, folder, pixels, batch_size=batch_size)
        assert result["onnx_rows"] == len(pixels)
        assert result["onnx_identical"] + result["onnx_near_ties"] == len(pixels)


def test_predict_onnx_writes_the_lines_predict_checkpoint_writes(exported, tmp_path):
    checkpoint, folder, data = exported
    by_onnx, by_torch = tmp_path / "onnx.txt", tmp_path / "torch.txt"
    assert main(["predict", "--onnx", str(folder), "--images", str(data / "images"), "--out", str(by_onnx),
                 "--no-progress"]) == 0  # fmt: skip
    assert main(["predict", "--checkpoint", str(checkpoint), "--images", str(data / "images"),
                 "--out", str(by_torch), "--no-progress"]) == 0  # fmt: skip
    assert by_onnx.read_text() == by_torch.read_text() and by_onnx.read_text().strip()


def test_a_missing_folder_and_an_rnn_checkpoint_are_one_line_errors(overfit_data, tmp_path, capsys):
    from training.config import load_train_config
    from training.loop import train

    assert main(["predict", "--onnx", str(tmp_path / "nope"), "--images", str(overfit_data / "images"),
                 "--out", str(tmp_path / "r.txt")]) == 2  # fmt: skip
    assert "export-onnx" in capsys.readouterr().err
    rnn = tiny_config(overfit_data, model={"kind": "rnn", "cnn_channels": [8, 8], "cnn_pools": ["2x2", "2x2"],
                                           "encoder_hidden": 8, "embed_dim": 8, "decoder_hidden": 16},
                      trainer={"epochs": 1})  # fmt: skip
    for key in ("d_model", "nhead", "num_layers", "dim_feedforward", "cut_after"):
        rnn["model"].pop(key, None)
    result = train(load_train_config(rnn), tmp_path / "rnn")
    out = tmp_path / "o"
    assert main(["export-onnx", "--checkpoint", str(result.best_checkpoint), "--out", str(out)]) == 2
    assert "Transformer family" in capsys.readouterr().err


def test_the_onnx_predictor_reads_pixels_too(exported):
    _, folder, data = exported
    from data_prep.images import load_gray

    path = sorted((data / "images").iterdir())[0]
    rows = OnnxPredictor(folder).predict([path, load_gray(path), np.zeros((0, 0), np.uint8)])
    assert rows[0].prediction == rows[1].prediction and rows[2].error
