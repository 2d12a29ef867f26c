"""predict on pen input: .inkml files are drawn with the checkpoint's ink options, as the dataset was."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from data_prep.images import process_gray
from data_prep.ink import InkmlImage, InkOptions
from tests.training._helpers import tiny_config
from training import predict as predict_module
from training.checkpoint import load_checkpoint, save_checkpoint
from training.cli import main
from training.predict import image_options, list_images, predict_images, prepare_input

# Not the InkOptions defaults, so a checkpoint's options visibly change the drawing.
INK = {"symbol_px": 24.0, "stroke_px": 2.0, "max_width_px": 2048, "max_height_px": 512, "max_shrink": 4.0,
       "label_field": "auto"}
IMAGE = {"crop": True, "margin": 4, "downsample": 1, "pad": False}

# "x + 1" in a writer's own units (CROHME-like), with a timestamp channel before X and Y.
VALID_INKML = """<ink xmlns="http://www.w3.org/2003/InkML">
<traceFormat><channel name="T"/><channel name="X"/><channel name="Y"/></traceFormat>
<annotation type="truth">$x+1$</annotation>
<trace>0 100 100, 1 140 160, 2 180 220</trace>
<trace>3 180 100, 4 140 160, 5 100 220</trace>
<trace>6 240 160, 7 320 160</trace>
<trace>8 280 120, 9 280 200</trace>
<trace>10 380 110, 11 400 100, 12 400 220</trace>
</ink>
"""
MALFORMED_INKML = '<ink xmlns="http://www.w3.org/2003/InkML"><trace>0 0, 10 10</ink>'


@pytest.fixture(scope="module")
def ink_run(overfit_data, tmp_path_factory):
    """A one-epoch run on a copy of the overfit slice whose manifest records ink options (an InkML
    import's manifest): (best.pt, its dataset folder)."""
    from training.config import load_train_config
    from training.loop import train

    root = tmp_path_factory.mktemp("ink") / "data"
    shutil.copytree(overfit_data, root, ignore=shutil.ignore_patterns("cache"))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["options"] = {"image": IMAGE, "ink": INK}
    (root / "manifest.json").write_text(json.dumps(manifest))
    result = train(load_train_config(tiny_config(root, trainer={"epochs": 1})), root.parent / "run")
    return result.best_checkpoint, root


@pytest.fixture
def inputs(ink_run, tmp_path):
    """A folder holding a png, a valid .inkml and a malformed one (sorted: a, b, c) and a stray .txt."""
    _, root = ink_run
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(sorted((root / "images").iterdir())[0], folder / "a.png")
    (folder / "b.inkml").write_text(VALID_INKML)
    (folder / "c.INKML").write_text(MALFORMED_INKML)
    (folder / "notes.txt").write_text("not an input")
    return folder


def test_the_checkpoint_records_the_manifests_ink_options(ink_run, overfit_data):
    best, _ = ink_run
    ckpt = load_checkpoint(best)
    assert ckpt["ink_options"] == INK and ckpt["image_options"] == IMAGE
    assert InkOptions.from_dict(ckpt["ink_options"]) == InkOptions(**INK)
    last = load_checkpoint(best.with_name("last.pt"))  # the resume point carries them too
    assert last["ink_options"] == INK


def test_predict_keeps_folder_order_and_reports_a_broken_inkml(ink_run, inputs, tmp_path):
    best, _ = ink_run
    paths = list_images(inputs)
    assert [p.name for p in paths] == ["a.png", "b.inkml", "c.INKML"]
    out = tmp_path / "out" / "results.txt"
    assert main(["predict", "--checkpoint", str(best), "--images", str(inputs), "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0

    rows = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert [(r["index"], r["id"]) for r in rows] == [(0, "a.png"), (1, "b.inkml"), (2, "c.INKML")]
    assert rows[0]["error"] is None and rows[1]["error"] is None
    assert rows[1]["score"] is not None  # the drawing was decoded
    assert rows[2]["error"].startswith("malformed InkML c.INKML") and rows[2]["score"] is None
    lines = out.read_text().split("\n")
    assert len(lines) == 4 and lines[2] == "" and lines[:2] == [rows[0]["prediction"], rows[1]["prediction"]]


def test_a_list_file_may_name_inkml_files_in_any_order(ink_run, inputs, tmp_path):
    best, _ = ink_run
    listing = tmp_path / "inputs.txt"
    listing.write_text("inputs/c.INKML\ninputs/b.inkml\ninputs/a.png\n")  # relative to the list's folder
    rows = predict_images(best, list_images(listing), device="cpu", progress=False)
    assert [r.id for r in rows] == ["c.INKML", "b.inkml", "a.png"]
    assert [r.error is None for r in rows] == [False, True, True]


@pytest.fixture
def fed(monkeypatch):
    """The image batches predict hands to the decoder, as a list filled while it runs."""
    batches = []
    real_decode = predict_module.decode_images

    def spy(model, images, **kwargs):
        batches.append(images.clone())
        return real_decode(model, images, **kwargs)

    monkeypatch.setattr(predict_module, "decode_images", spy)
    return batches


def _pipeline_pixels(path, ink: InkOptions) -> np.ndarray:
    """What an InkML import stores for `path`: the pipeline renders its InkmlImage source, then processes
    it with the manifest's image options."""
    return process_gray(InkmlImage(path, ink).render(), image_options(IMAGE))


def test_predict_feeds_the_pixels_the_dataset_pipeline_makes(ink_run, inputs, fed):
    best, _ = ink_run
    source = inputs / "b.inkml"
    predict_images(best, [source], device="cpu", progress=False)

    expected = _pipeline_pixels(source, InkOptions(**INK))
    # the defaults draw another size, so a match below means the checkpoint's options were used
    assert expected.shape != _pipeline_pixels(source, InkOptions()).shape
    (images,) = fed
    assert images.shape == (1, 1, *expected.shape)
    assert torch.equal(images[0, 0], torch.from_numpy(expected).float() / 255.0)
    ckpt = load_checkpoint(best)
    ink = InkOptions.from_dict(ckpt["ink_options"])
    assert np.array_equal(prepare_input(source, image_options(ckpt["image_options"]), ink), expected)


def _without_ink_options(best, tmp_path):
    ckpt = load_checkpoint(best)
    ckpt["ink_options"] = None  # what loop.py records for a dataset of images
    return save_checkpoint(tmp_path / "images-only.pt", ckpt)


def test_a_checkpoint_without_ink_options_draws_with_the_defaults_and_warns_once(
    ink_run, inputs, tmp_path, caplog, fed
):
    best, _ = ink_run
    source = inputs / "b.inkml"
    with caplog.at_level(logging.WARNING, logger="training.predict"):
        rows = predict_images(_without_ink_options(best, tmp_path), [source, inputs / "a.png", source],
                              device="cpu", progress=False)
    assert [r.error for r in rows] == [None, None, None]
    warnings = [r.getMessage() for r in caplog.records if "not trained on pen input" in r.getMessage()]
    assert len(warnings) == 1 and "InkOptions defaults" in warnings[0]
    expected = torch.from_numpy(_pipeline_pixels(source, InkOptions())).float() / 255.0
    drawn = [batch for batch in fed if batch.shape[-2:] == expected.shape]
    assert len(drawn) == 1 and len(drawn[0]) == 2  # both copies, in one batch of their size
    assert all(torch.equal(image[0], expected) for image in drawn[0])


def test_an_images_only_run_warns_about_nothing(ink_run, inputs, tmp_path, caplog):
    best, _ = ink_run
    with caplog.at_level(logging.WARNING, logger="training.predict"):
        predict_images(_without_ink_options(best, tmp_path), [inputs / "a.png"], device="cpu", progress=False)
    assert not [r for r in caplog.records if "pen input" in r.getMessage()]
