"""Importers: one small module per source format, each yielding RawItem; `import_dataset` runs one
through the shared pipeline (the CLI `python -m data_prep import --format F` calls the same)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from data_prep.buckets import AUTO
from data_prep.formulas import FormulaOptions
from data_prep.images import ImageOptions
from data_prep.importers import course, im2latex, im2latex_raw, tsv
from data_prep.pipeline import PrepareOptions, prepare_dataset

log = logging.getLogger(__name__)
IMPORTERS = {"im2latex": im2latex, "im2latex-raw": im2latex_raw, "course": course, "tsv": tsv}
_IMPORTER_ARGS = {"tsv": {"labels"}}


def build_options(**flat) -> PrepareOptions:
    """PrepareOptions from flat keyword names (`keep_multiline=True, margin=4, workers=0`)."""
    groups = {"formula": FormulaOptions, "image": ImageOptions}
    nested: dict[str, dict] = {name: {} for name in groups}
    top: dict = {}
    for key, value in flat.items():
        owner = next(
            (g for g, cls in groups.items() if key in {f.name for f in dataclasses.fields(cls)}), None
        )
        if owner is not None:
            nested[owner][key] = value
        elif key in {f.name for f in dataclasses.fields(PrepareOptions)} - set(groups):
            top[key] = value
        else:
            valid = sorted(
                {
                    f.name
                    for c in (FormulaOptions, ImageOptions, PrepareOptions)
                    for f in dataclasses.fields(c)
                }
            )
            raise TypeError(f"unknown data_prep option {key!r}; valid options: {', '.join(valid)}")
    if not isinstance(nested["image"].get("buckets", AUTO), str):
        nested["image"]["buckets"] = tuple(tuple(b) for b in nested["image"]["buckets"])
    if "split_ratio" in top:
        top["split_ratio"] = tuple(top["split_ratio"])
    return PrepareOptions(FormulaOptions(**nested["formula"]), ImageOptions(**nested["image"]), **top)


def import_dataset(fmt: str, src: Path | str, out: Path | str, **options) -> Path:
    """Import `src` in format `fmt` into the prepared folder `out`; returns `out`.

    `options` are flat processing options (see build_options) plus the importer's own (tsv: `labels`).
    Each format's DEFAULTS apply underneath them."""
    if fmt not in IMPORTERS:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(IMPORTERS)}")
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} does not exist: check --src")
    if out.resolve().is_relative_to(src.resolve()):
        raise ValueError(f"--out {out} lies inside the source {src}: data_prep never writes into a source")
    if src.resolve().is_relative_to(out.resolve()):
        # replacing --out (--force) would delete the source with it
        raise ValueError(f"the source {src} lies inside --out {out}: choose an --out beside the source")
    module = IMPORTERS[fmt]
    importer_args = {k: options.pop(k) for k in _IMPORTER_ARGS.get(fmt, set()) if k in options}
    merged = {**module.DEFAULTS, **options}
    log.info("importing %s (%s) into %s", src, fmt, out)
    return prepare_dataset(
        module.iter_items(src, **importer_args),
        out,
        source=str(src),
        fmt=fmt,
        options=build_options(**merged),
        source_options={k: str(v) for k, v in importer_args.items()},
    )
