"""python -m benchmarks bench_loader: images/s through the training loader, decode cache vs PNG decoding.

Builds a ~1,100-image prepared folder in a temp dir from ../shared/data/im2latex-sample (grayscale, as the
importer writes them) or, where that sample is absent, renders one with `data_prep.ensure.synth_dataset`.
Each figure is the best of a few epochs of `build_loader(..., shuffle=True)`. The plain figures run in the
main process (num_workers=0), so they measure decoding and collation rather than worker start-up; the
augmented ones apply the default augmentation (noise, blur, aspect scaling, affine: what a training epoch
pays), in the main process and with two loader workers (a GPU run's default uses its cores less one).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from PIL import Image

from core.paths import shared_data_dir
from data_prep.augment import AugmentConfig
from data_prep.dataset import build_loader
from data_prep.ensure import synth_dataset
from data_prep.vocab import Vocab

BATCH_SIZE = 32
EPOCHS = 3
N_SYNTHETIC = 1400  # ~1,100 of them land in train


def _from_im2latex(sample: Path, root: Path) -> None:
    formulas = (sample / "formulas.norm.lst").read_text(encoding="utf-8").split("\n")
    (root / "formulas.norm.lst").write_text("\n".join(formulas), encoding="utf-8")
    lines = []
    for split in ("train", "validate", "test"):
        lines += [ln for ln in (sample / f"{split}_filter.lst").read_text().split("\n") if ln.strip()]
    for line in lines:
        name = line.split()[0]
        with Image.open(sample / "images_processed" / name) as img:
            img.convert("L").save(root / "images" / name)
    (root / "train.lst").write_text("\n".join(lines) + "\n")
    Vocab.build(formulas[int(ln.split()[1])].split() for ln in lines).save(root / "vocab.json")


def _images_per_s(
    root: Path, vocab: Vocab, use_cache: bool, augment: bool = False, workers: int = 0
) -> float:
    loader = build_loader(root, "train", vocab, BATCH_SIZE, shuffle=True, seed=0, use_cache=use_cache,
                          augment=AugmentConfig() if augment else None, num_workers=workers)
    best = 0.0
    for epoch in range(EPOCHS):
        loader.batch_sampler.set_epoch(epoch)
        start, count = time.perf_counter(), 0
        for batch in loader:
            count += len(batch)
        best = max(best, count / (time.perf_counter() - start))
    return best


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        root = Path(tmp) / "prepared"
        sample = shared_data_dir() / "im2latex-sample"
        if sample.is_dir():
            (root / "images").mkdir(parents=True)
            _from_im2latex(sample, root)
        else:
            synth_dataset(root, n=N_SYNTHETIC, seed=0)
        vocab = Vocab.load(root / "vocab.json")
        start = time.perf_counter()
        n_images = len(build_loader(root, "train", vocab, BATCH_SIZE).dataset)  # builds the decode cache
        build_s = time.perf_counter() - start
        return {
            "loader_cached_img_per_s": round(_images_per_s(root, vocab, use_cache=True), 1),
            "loader_png_img_per_s": round(_images_per_s(root, vocab, use_cache=False), 1),
            "loader_cache_build_img_per_s": round(n_images / build_s, 1),
            "loader_augmented_img_per_s": round(_images_per_s(root, vocab, True, augment=True), 1),
            "loader_augmented_2workers_img_per_s": round(_images_per_s(root, vocab, True, True, 2), 1),
        }


if __name__ == "__main__":
    print(run())
