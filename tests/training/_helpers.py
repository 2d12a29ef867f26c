"""Helpers for the training tests: prepared-dataset slices of ../shared/data/im2latex-sample, tiny configs.

The slices are the sample's shortest formulas in its smallest buckets, so a tiny model can learn them on
CPU within seconds. The folder follows the prepared format (docs/DATASETS.md): grayscale PNGs,
formulas.norm.lst, <split>.lst, vocab.json, manifest.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from data_prep.vocab import Vocab
from training.callbacks import Callback

SMALL_SIZES = {(120, 50), (160, 40)}  # (W, H) buckets of the sample's shortest formulas


def sample_rows(sample: Path, list_name: str, formulas: list[str]) -> list[tuple[int, str, str]]:
    rows = []
    for line in (sample / list_name).read_text().split("\n"):
        if not line.strip():
            continue
        name, index = line.split()
        with Image.open(sample / "images_processed" / name) as im:
            size = im.size
        if size in SMALL_SIZES:
            rows.append((len(formulas[int(index)].split()), name, formulas[int(index)]))
    return sorted(rows)


def build_prepared(sample: Path, out: Path, splits: dict[str, list[tuple[int, str, str]]]) -> Path:
    (out / "images").mkdir(parents=True)
    lines: list[str] = []
    for split, rows in splits.items():
        entries = []
        for _, name, formula in rows:
            target = out / "images" / name
            if not target.exists():
                Image.open(sample / "images_processed" / name).convert("L").save(target)
            lines.append(formula)
            entries.append(f"{name} {len(lines) - 1}")
        (out / f"{split}.lst").write_text("\n".join(entries) + "\n")
    (out / "formulas.norm.lst").write_text("\n".join(lines) + "\n")
    Vocab.build(f.split() for _, _, f in splits["train"]).save(out / "vocab.json")
    # The sample's images are already cropped and bucket-padded: predict must not re-crop them.
    options = {"image": {"crop": False, "downsample": 1, "pad": True}}
    manifest = {"source": str(sample), "content_hash": "test-slice", "options": options}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def tiny_config(dataset: Path, **sections) -> dict:
    """A small, fast TrainConfig dict on `dataset`; `sections` deep-update it (e.g. trainer={...})."""
    from core.typed_config import merge

    base = {
        "data": {"dataset": str(dataset)},
        "model": {"kind": "transformer", "d_model": 32, "nhead": 2, "num_layers": 1, "dim_feedforward": 64,
                  "dropout": 0.0, "cut_after": 2, "max_output_len": 30},
        "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.0},
        "schedule": {"name": "constant"},
        "augment": {"enabled": False},
        # fp32: several tests compare runs to float tolerance; the bf16 path has its own (test_gpu_path)
        "trainer": {"epochs": 2, "batch_size": 4, "progress": False, "val_max_len": 8, "amp": False},
    }
    return merge(base, sections)


class Recorder(Callback):
    """Records every hook call; raises KeyboardInterrupt at the end of epoch `stop_at` (a crash)."""

    def __init__(self, stop_at: int | None = None):
        self.stop_at, self.started, self.epochs, self.ended = stop_at, None, [], None
        self.batches: list[tuple[int, int, int]] = []

    def on_train_start(self, config, info):
        self.started = info

    def on_batch_end(self, epoch, step, steps, images_per_s):
        assert images_per_s > 0
        self.batches.append((epoch, step, steps))

    def on_epoch_end(self, epoch, metrics):
        self.epochs.append((epoch, metrics))
        if epoch == self.stop_at:
            raise KeyboardInterrupt("stopped by the test")

    def on_train_end(self, result):
        self.ended = result
