"""Find a prepared dataset by name or path, building a missing built-in synthetic one on the spot.

from data_prep.ensure import ensure_dataset, import_dataset
root = ensure_dataset("synth-small")   # data/synth-small, rendered first if missing
"""

from __future__ import annotations

import logging
from pathlib import Path

from core.paths import data_dir, shared_data_dir
from data_prep.importers import import_dataset
from data_prep.synth import synth_dataset

__all__ = ["BUILTIN_DATASETS", "ensure_dataset", "import_dataset", "is_prepared", "synth_dataset"]
log = logging.getLogger(__name__)

BUILTIN_DATASETS: dict[str, dict] = {
    "synth": {"n": 20000, "seed": 0, "style": "printed"},
    "synth-small": {"n": 600, "seed": 0, "style": "printed"},  # the smoke study and tests use it
    "synth-handwritten": {"n": 20000, "seed": 0, "style": "handwritten"},
    # the CPU profile (studies/transformer-cpu.yaml): short formulas at half scale, so a small model
    # learns to read them in minutes on 2 cores (12,000 rendered, 7,500 kept: 6,000/750/750)
    "synth-cpu": {"n": 12000, "seed": 0, "style": "printed", "downsample": 2, "max_tokens": 20},
}
# Real datasets nobody can render here: a missing one is imported by the user, and its study says how.
# `flags` fix the import a study's figures were measured on; `archive` is its file in ../shared/data.
IMPORTED_DATASETS: dict[str, dict] = {
    "crohme": {
        "format": "inkml",
        # formula-disjoint validation carved from the training InkML; CROHME 2013 kept apart as test;
        # x4 leaves ~8 px symbols, the size that keeps a CPU-profile trial within 15 minutes
        "flags": "--split-dirs test=TestINKMLGT --split-ratio 0.9 0.1 0 --downsample 4",
        "what": "CROHME's InkML (the ICDAR competition package from TC-11: TrainINKML/ and a test year, "
        "e.g. TestINKMLGT/ for 2013)",
        "archive": "crohme-inkml.tar.xz",
    },
}
_REQUIRED = ("formulas.norm.lst", "train.lst", "vocab.json")


def is_prepared(path: Path) -> bool:
    return Path(path).is_dir() and all((Path(path) / name).is_file() for name in _REQUIRED)


def ensure_dataset(name_or_path: str | Path) -> Path:
    """The prepared folder for a path or a name under data/; a missing built-in dataset is rendered."""
    path = Path(name_or_path)
    is_name = isinstance(name_or_path, str) and "/" not in name_or_path and not path.exists()
    root = data_dir() / name_or_path if is_name else path
    if is_prepared(root):
        return root
    name = root.name
    if root.exists() and any(root.iterdir()):
        raise FileNotFoundError(
            f"{root} exists but is not a prepared dataset (needs {', '.join(_REQUIRED)}): "
            f"rebuild it with {_make_command(name, root)} --force"
        )
    if name not in BUILTIN_DATASETS or (not is_name and root.resolve() != (data_dir() / name).resolve()):
        raise FileNotFoundError(f"dataset {root} not found: build it with {_make_command(name, root)}")
    spec = BUILTIN_DATASETS[name]
    log.warning("dataset %s is missing: rendering built-in %s now (%s)", root, name, spec)
    try:
        synth_dataset(root, overwrite=False, **spec)
    except FileExistsError:
        if not is_prepared(root):  # another process built it at the same time: fine if it is complete
            raise
    return root


def _make_command(name: str, root: Path) -> str:
    if name in IMPORTED_DATASETS:
        return import_hint(name, root)
    if name in BUILTIN_DATASETS:
        spec = BUILTIN_DATASETS[name]
        flags = " ".join(f"--{key.replace('_', '-')} {value}" for key, value in spec.items())
        return f'make data ARGS="synth --out {root} {flags}"'
    return f'make data ARGS="import --format im2latex|im2latex-raw|course|tsv --src DIR --out {root}"'


def import_hint(name: str, root: Path) -> str:
    """The one command that imports a known real dataset: from ../shared/data's copy when this machine
    has one, otherwise from a folder the user downloads."""
    spec = IMPORTED_DATASETS[name]
    archive = shared_data_dir() / spec["archive"]
    make = f'make data ARGS="import --format {spec["format"]} --src {{src}} --out {root} {spec["flags"]}"'
    if archive.is_file():  # --src takes the archive itself: unpacked beside --out, removed afterwards
        return make.format(src=archive)
    return make.format(src="DIR") + f", with DIR (or its .tar.xz / .zip) holding {spec['what']}"
