"""The processing every importer shares: raw items -> a prepared dataset folder.

    prepare_dataset(items, Path("data/NAME"), source="...", fmt="tsv", options=PrepareOptions())

Formulas are cleaned first (cheap), then images are processed in a process pool, then splits, lists,
vocab.json and manifest.json are written into a temp folder beside the output that is renamed into
place at the end, so a crash never leaves half a dataset.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from data_prep.buckets import AUTO, auto_buckets
from data_prep.formulas import FormulaOptions, FormulaRejected, clean_formula
from data_prep.images import ImageOptions, ImageRejected, load_gray, pad_to_bucket, process_gray, save_png
from data_prep.items import SPLITS, RawItem
from data_prep.manifest import DERIVED_CACHE_DIR, load_manifest, write_manifest
from data_prep.vocab import Vocab

log = logging.getLogger(__name__)
PARALLEL_MIN_ITEMS = 64  # below this a pool costs more than it saves


class NoUsableDataError(ValueError):
    """Nothing usable remains after processing (or the source held nothing)."""


@dataclass(frozen=True)
class PrepareOptions:
    formula: FormulaOptions = field(default_factory=FormulaOptions)
    image: ImageOptions = field(default_factory=ImageOptions)
    split_ratio: tuple[float, float, float] = (0.8, 0.1, 0.1)  # for items without a source split
    split_seed: int = 0
    group_splits: bool = True  # the ratio split keeps all rows of one formula in one split
    min_count: int = 1  # vocab.json keeps train tokens seen at least this often
    workers: int | None = None  # None: every core for large imports; 0: serial
    overwrite: bool = False

    def __post_init__(self) -> None:
        check_prepare_options(self)


@dataclass
class _Entry:
    item: RawItem
    tokens: list[str] | None = None
    file_name: str = ""
    size: tuple[int, int] | None = None  # (H, W) once processed


def prepare_dataset(
    items, out: Path, *, source: str, fmt: str, options: PrepareOptions, source_options: dict | None = None
) -> Path:
    """Process `items` (RawItem) into the prepared folder `out`; returns `out`."""
    out = Path(out)
    check_out(out, options.overwrite)
    dropped: list[dict] = []
    entries = _clean_formulas(list(items), options.formula, dropped)
    if not entries and not dropped:
        raise NoUsableDataError(f"no items found in {source}: check --src and --format {fmt}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        _assign_file_names(entries)
        entries = _process_images(entries, tmp / "images", options, dropped)
        if options.image.pad and options.image.buckets == AUTO:
            _pad_to_auto_buckets(entries, tmp / "images", options.workers)
        if not entries:
            reasons = Counter(_reason_kind(d["reason"]) for d in dropped).most_common(5)
            raise NoUsableDataError(
                f"nothing usable in {source}: all {len(dropped)} items dropped ({reasons})"
            )
        _assign_splits(entries, options.split_ratio, options.split_seed, options.group_splits)
        entries = _drop_unlabelled_in_labelled_splits(entries, tmp / "images", dropped)
        counts = _write_lists(entries, tmp, options.min_count)
        buckets = Counter(f"{w}x{h}" for h, w in (e.size for e in entries))
        manifest = {
            "source": str(source),
            "format": fmt,
            "options": {**_jsonable(asdict(options)), **(source_options or {})},
            "counts": counts,
            "split_overlap": split_overlap(entries),
            "dropped_count": len(dropped),
            "dropped": dropped,
            "buckets": dict(sorted(buckets.items(), key=lambda kv: -kv[1])),
        }
        write_manifest(tmp, manifest)
        _move_into_place(tmp, out, options.overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("prepared %s: %s, %d dropped", out, counts, len(dropped))
    return out


def _clean_formulas(items: list[RawItem], options: FormulaOptions, dropped: list[dict]) -> list[_Entry]:
    entries = []
    for item in items:
        if item.split is not None and item.split not in SPLITS:
            raise ValueError(f"item {item.id}: split {item.split!r} is not one of {SPLITS}")
        try:
            if item.label_error is not None:
                raise FormulaRejected(item.label_error)
            tokens = None
            if item.formula is not None:
                tokens = clean_formula(item.formula, options, pretokenized=item.pretokenized)
        except FormulaRejected as e:
            dropped.append(_drop(item, str(e)))
            continue
        entries.append(_Entry(item, tokens))
    return entries


def _drop(item: RawItem, reason: str) -> dict:
    return {"id": item.id, "split": item.split, "reason": reason, "origin": item.origin}


def _reason_kind(reason: str) -> str:
    return re.split(r"[:(]", reason)[0].strip()


def _assign_file_names(entries: list[_Entry]) -> None:
    """`<id>.png`, made filename- and .lst-safe; a clash (same id in two splits) gets the split prefixed."""
    used: set[str] = set()
    for e in entries:
        stem = re.sub(r"[^\w.+-]", "_", e.item.id).lstrip(".") or "item"
        name, n = f"{stem}.png", 1
        while name in used:
            name = f"{e.item.split or 'x'}-{stem}.png" if n == 1 else f"{e.item.split or 'x'}-{stem}-{n}.png"
            n += 1
        used.add(name)
        e.file_name = name


def _image_job(job: tuple[int, object, Path, ImageOptions]) -> tuple[int, tuple[int, int] | None, str | None]:
    index, source, dst, options = job
    try:
        if hasattr(source, "render"):
            gray = source.render()
        else:
            gray = load_gray(source, options.max_pixels, precrop=options.crop)
        gray = process_gray(gray, options)
        save_png(gray, dst)
        return index, gray.shape, None
    except ImageRejected as e:
        return index, None, str(e)
    except Exception as e:  # one bad item never kills the run: record it and go on
        return index, None, f"image processing failed: {type(e).__name__}: {e}"


def _process_images(entries: list[_Entry], images_dir: Path, options: PrepareOptions, dropped: list[dict]):
    jobs = []
    for i, e in enumerate(entries):
        if e.item.image is None:
            dropped.append(_drop(e.item, "no image for this label"))
        else:
            jobs.append((i, e.item.image, images_dir / e.file_name, options.image))
    results = _map_jobs(_image_job, jobs, options.workers, "images")
    kept = []
    for index, size, reason in results:
        entry = entries[index]
        if reason is not None:
            dropped.append(_drop(entry.item, reason))
        else:
            entry.size = size
            kept.append(entry)
    return kept


def _pad_job(job: tuple[Path, tuple]) -> tuple[int, int]:
    path, buckets = job
    gray = pad_to_bucket(load_gray(path), buckets)
    save_png(gray, path)
    return gray.shape


def _pad_to_auto_buckets(entries: list[_Entry], images_dir: Path, workers: int | None) -> None:
    """Second pass for `buckets: auto`: fit buckets to every crop's size, then pad each crop to its own."""
    buckets = auto_buckets([(w, h) for h, w in (e.size for e in entries)])
    log.info("auto buckets: %d sizes fitted to %d crops", len(buckets), len(entries))
    shapes = _map_jobs(_pad_job, [(images_dir / e.file_name, buckets) for e in entries], workers, "padding")
    for entry, shape in zip(entries, shapes, strict=True):
        entry.size = shape


def _map_jobs(fn, jobs: list, workers: int | None, desc: str) -> list:
    """fn over jobs, in order, in a process pool for large jobs lists (serial below PARALLEL_MIN_ITEMS)."""
    workers = _worker_count(workers, len(jobs))
    bar = dict(total=len(jobs), desc=desc, unit="img", disable=None, mininterval=1.0)
    if workers <= 1:
        return [fn(job) for job in tqdm(jobs, **bar)]
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers, initializer=_leave_signals_to_parent) as pool:
        return list(tqdm(pool.imap(fn, jobs, chunksize=8), **bar))


def _leave_signals_to_parent() -> None:
    """A forked worker inherits the caller's handlers (a study turns SIGTERM into KeyboardInterrupt): each
    worker would print its own traceback. The parent alone handles Ctrl-C/SIGTERM and ends the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _worker_count(requested: int | None, n_jobs: int) -> int:
    if requested is not None:
        return requested
    return 0 if n_jobs < PARALLEL_MIN_ITEMS else min(os.cpu_count() or 1, 16)


def _assign_splits(entries: list[_Entry], ratio: tuple[float, ...], seed: int, grouped: bool) -> None:
    """Give every item without a source split one by seed and ratio. Grouped (the default), all rows of
    one formula go to one split: handwritten sets hold one formula written by several people, and a
    random row split then validates on formulas the model has already been trained on."""
    unsplit = [e for e in entries if e.item.split is None]
    if not unsplit:
        return
    if len(ratio) != 3 or any(not r >= 0 for r in ratio) or not 0 < sum(ratio) < float("inf"):
        raise ValueError(f"split ratio {ratio} must be three non-negative numbers (train, validate, test)")
    groups: dict[str, list[_Entry]] = {}
    for e in sorted(unsplit, key=lambda e: e.item.id):
        # an unlabelled item is its own group: nothing to leak
        key = " ".join(e.tokens) if grouped and e.tokens is not None else f"\0{e.item.id}"
        groups.setdefault(key, []).append(e)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    targets = _split_targets(len(unsplit), ratio)
    placed = dict.fromkeys(SPLITS, 0)
    for group in order:
        # the split furthest below its share takes the group: a split with no share never gets one, and
        # sizes stay within one group of the ratio whatever the group sizes
        split = max((s for s in SPLITS if targets[s] > 0), key=lambda s: targets[s] - placed[s])
        for e in group:
            e.item.split = split
        placed[split] += len(group)
    empty = [s for s in SPLITS if targets[s] > 0 and placed[s] == 0]
    if empty:
        log.warning("split %s got no rows: %d formula groups were too few for the ratio %s",
                    "/".join(empty), len(order), ratio)  # fmt: skip


def _split_targets(n: int, ratio: tuple[float, ...]) -> dict[str, int]:
    """Rows per split, summing to n (largest remainders take the rounding)."""
    exact = [n * r / sum(ratio) for r in ratio]
    counts = [int(x) for x in exact]
    for i in sorted(range(3), key=lambda i: exact[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    return dict(zip(SPLITS, counts, strict=True))


def split_overlap(entries: list[_Entry]) -> dict:
    """Per split: its distinct formulas and how many of them also occur in train (what a split leaks)."""
    formulas = {s: {" ".join(e.tokens) for e in entries if e.item.split == s and e.tokens is not None}
                for s in SPLITS}  # fmt: skip
    return {
        s: {"formulas": len(formulas[s]), "also_in_train": len(formulas[s] & formulas["train"])}
        for s in SPLITS
        if s != "train"
    } | {"train": {"formulas": len(formulas["train"])}}


def _drop_unlabelled_in_labelled_splits(entries: list[_Entry], images_dir: Path, dropped: list[dict]):
    """A split is either all labelled or all unlabelled (a test split without formulas)."""
    labelled_splits = {e.item.split for e in entries if e.tokens is not None}
    kept = []
    for e in entries:
        if e.tokens is None and e.item.split in labelled_splits:
            dropped.append(_drop(e.item, "no formula for this image (its split has formulas)"))
            (images_dir / e.file_name).unlink(missing_ok=True)
        else:
            kept.append(e)
    return kept


def _write_lists(entries: list[_Entry], root: Path, min_count: int) -> dict[str, int]:
    """formulas.norm.lst, <split>.lst, vocab.json; returns per-split counts."""
    formulas: list[str] = []
    lines: dict[str, list[str]] = {s: [] for s in SPLITS}
    for split in SPLITS:
        for e in (e for e in entries if e.item.split == split):
            if e.tokens is None:
                lines[split].append(e.file_name)
            else:
                lines[split].append(f"{e.file_name} {len(formulas)}")
                formulas.append(" ".join(e.tokens))
    for split, split_lines in lines.items():
        (root / f"{split}.lst").write_text("".join(ln + "\n" for ln in split_lines), encoding="utf-8")
    (root / "formulas.norm.lst").write_text("".join(f + "\n" for f in formulas), encoding="utf-8")
    train = [e.tokens for e in entries if e.item.split == "train" and e.tokens is not None]
    if not train:
        log.warning("no labelled train items: vocab.json is built from every split")
        train = [e.tokens for e in entries if e.tokens is not None]
    Vocab.build(train, min_count=min_count).save(root / "vocab.json")
    return {s: len(v) for s, v in lines.items()}


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} appeared while preparing: pass --force to replace it")
        # again, now that the new files are known: a file the user added since would go with the folder
        _check_replaceable(out, written={p.name for p in tmp.iterdir()})
    if out.is_dir():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        old.unlink() if old.is_symlink() else shutil.rmtree(old, ignore_errors=True)  # a link's target stays
    else:
        try:
            tmp.rename(out)
        except OSError as e:  # another process (a parallel study worker) finished the same dataset first
            raise FileExistsError(f"{out} appeared while preparing: pass --force to replace it") from e


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def check_prepare_options(options: PrepareOptions) -> None:
    """Refuse values that would not fail but quietly drop every item or split nothing (NaN ratios)."""
    ratio = options.split_ratio
    try:
        ratio_ok = len(ratio) == 3 and all(math.isfinite(r) and r >= 0 for r in ratio) and sum(ratio) > 0
    except TypeError:
        ratio_ok = False
    if not ratio_ok:
        raise ValueError(
            f"split_ratio must be three finite numbers >= 0, not all 0 (train, validate, test); got {ratio!r}"
        )
    if not isinstance(options.min_count, int) or options.min_count < 1:
        raise ValueError(f"min_count must be a whole number 1 or more, got {options.min_count!r}")
    if options.workers is not None and (not isinstance(options.workers, int) or options.workers < 0):
        raise ValueError(
            f"workers must be 0 (serial), a positive count or None (all cores), got {options.workers!r}"
        )


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an --out that cannot be written or must not be replaced: --force replaces
    only a folder data_prep made (its manifest.json says so) or an empty one, never the user's files."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file: name a folder for the prepared dataset")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} already exists: pass --force (overwrite=True) to replace it")
        _check_replaceable(out)
    parent = next(p for p in out.absolute().parents if p.exists())
    if not parent.is_dir():
        raise FileExistsError(f"--out {out} cannot be made: {parent} is a file")
    try:  # the one way to know, whoever runs it (root passes any permission check)
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=parent))
    except OSError as e:
        raise PermissionError(
            f"cannot write --out {out}: {parent} is not writable ({e.strerror}); pick a folder you can write"
        ) from None


def _check_replaceable(out: Path, written: set[str] | None = None) -> None:
    """`written`: the names the new dataset holds; anything else in `out` is not data_prep's to delete."""
    names = sorted(p.name for p in out.iterdir())
    if "data_prep_version" not in load_manifest(out, required=False):
        raise FileExistsError(
            f"--force replaces only a folder that data_prep made, and {out} holds no data_prep manifest.json "
            f"(it holds {_some(names)}): nothing was deleted; choose another --out or empty it yourself"
        )
    foreign = [n for n in names if written is not None and n not in written | {DERIVED_CACHE_DIR}]
    if foreign:
        raise FileExistsError(
            f"--force would delete {_some(foreign)} in {out}, which data_prep did not write: "
            "nothing was deleted; move them out of it and run again"
        )


def _some(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
