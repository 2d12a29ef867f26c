"""Importers: one small module per source format, each yielding RawItem; `import_dataset` runs one
through the shared pipeline (the CLI `python -m data_prep import --format F` calls the same)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from data_prep.buckets import AUTO
from data_prep.formulas import FormulaOptions
from data_prep.images import ImageOptions
from data_prep.importers import course, im2latex, im2latex_raw, inkml, tsv
from data_prep.importers._common import check_inputs, drop_repeated_images
from data_prep.importers.archive import is_archive, unpacked
from data_prep.pipeline import PrepareOptions, check_out, prepare_dataset

log = logging.getLogger(__name__)
IMPORTERS = {
    "im2latex": im2latex, "im2latex-raw": im2latex_raw, "course": course, "tsv": tsv, "inkml": inkml,
}  # fmt: skip
_IMPORTER_ARGS = {"tsv": {"labels"}, "inkml": {"split_dirs", *inkml.INK_ARGS}}


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
    if is_archive(src):
        with unpacked(src, out.resolve().parent) as folder:
            return _import(fmt, folder, out, options, source=src)
    return _import(fmt, src, out, options, source=src)


def _import(fmt: str, src: Path, out: Path, options: dict, *, source: Path) -> Path:
    module = IMPORTERS[fmt]
    importer_args = {k: options.pop(k) for k in _IMPORTER_ARGS.get(fmt, set()) if k in options}
    # every input, not only --src: replacing --out (--force) must never delete one
    check_inputs(src, out, {"--labels": Path(importer_args["labels"])} if importer_args.get("labels") else {})
    prepare_options = build_options(**{**module.DEFAULTS, **options})  # bad options fail before any reading
    check_out(out, prepare_options.overwrite)
    log.info("importing %s (%s) into %s", src, fmt, out)
    return prepare_dataset(
        drop_repeated_images(module.iter_items(src, **importer_args)),
        out,
        source=str(source),
        fmt=fmt,
        options=prepare_options,
        source_options=_source_options(module, importer_args),
    )


def _source_options(module, importer_args: dict) -> dict:
    if hasattr(module, "manifest_options"):  # structured (inkml's rendering: predict reads it back)
        return module.manifest_options(**importer_args)
    return {k: str(v) for k, v in importer_args.items()}
