"""python -m data_prep synth|import ...: build a prepared dataset folder (wrapped by `make data ARGS=...`).

python -m data_prep synth --out data/synth --n 20000 --seed 0 [--style printed|handwritten]
python -m data_prep import --format im2latex --src ../shared/data/im2latex-sample --out data/im2latex
python -m data_prep import --format tsv --src DIR --labels FILE.tsv --out data/NAME
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from core.paths import data_dir
from data_prep.buckets import parse_buckets
from data_prep.importers import IMPORTERS, import_dataset
from data_prep.ink import LABEL_FIELDS
from data_prep.manifest import load_manifest
from data_prep.pipeline import NoUsableDataError
from data_prep.synth import synth_dataset
from data_prep.synth.render import STYLES


def _whole(low: int, high: int | None = None):
    """An argparse type for a whole number in range: a value out of range would not fail later, it would
    drop every item (`--ink-threshold -1`: no ink) or be changed quietly (`--downsample 0` acts as 1)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            allowed = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"{value} is out of range: use a whole number {allowed}")
        return value

    return parse


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:  # nan passes every comparison, so it is named here
        raise argparse.ArgumentTypeError(f"{text} is not a share: use a finite number 0 or more")
    return value


class _SplitRatio(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        if sum(values) <= 0:
            parser.error(f"argument {option_string}: {' '.join(map(str, values))} gives no split any share")
        setattr(namespace, self.dest, values)


def _processing_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("processing (every step on by default)")
    g.add_argument("--keep-multiline", action="store_true", default=None, help="keep \\\\ / array / cases")
    g.add_argument("--keep-mathpix-errors", dest="drop_mathpix_errors", action="store_false", default=None)
    g.add_argument("--keep-non-ascii", dest="drop_non_ascii", action="store_false", default=None,
                   help="keep formulas with non-ASCII (e.g. Chinese \\text{...})")  # fmt: skip
    g.add_argument("--no-strip-dollars", dest="strip_dollars", action="store_false", default=None)
    g.add_argument("--normalize-left-right", action="store_true", default=None, help="\\left( -> (")
    g.add_argument("--normalize-fonts", action="store_true", default=None, help="{\\rm x} -> \\mathrm{x}")
    g.add_argument("--max-tokens", type=_whole(0), help="drop longer formulas (0: no limit)")
    g.add_argument("--no-crop", dest="crop", action="store_false", default=None)
    g.add_argument("--margin", type=_whole(0), help="white pixels kept around the ink")
    g.add_argument("--ink-threshold", type=_whole(1, 255), help="a pixel darker than this is ink (1-255)")
    g.add_argument("--downsample", type=_whole(1), help="integer downsampling factor after cropping")
    g.add_argument("--no-pad", dest="pad", action="store_false", default=None, help="do not pad to buckets")
    g.add_argument("--buckets", type=parse_buckets,
                   help="auto (fitted to the crops: the default but for --format course) or WxH,WxH,...")
    g.add_argument("--max-pixels", type=_whole(1), help="decompression-bomb limit in pixels")
    g.add_argument("--split-ratio", type=_share, nargs=3, action=_SplitRatio,
                   metavar=("TRAIN", "VAL", "TEST"))  # fmt: skip
    g.add_argument("--split-seed", type=int)
    g.add_argument("--no-group-splits", dest="group_splits", action="store_false", default=None,
                   help="split rows one by one (default: all rows of one formula land in one split)")
    g.add_argument("--min-count", type=_whole(1), help="vocab.json keeps train tokens seen this often")
    g.add_argument("--workers", type=_whole(0), help="image worker processes (0: serial; default: all cores)")
    g.add_argument("--force", dest="overwrite", action="store_true", default=None, help="replace --out")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="render the embedded school-maths dataset")
    synth.add_argument("--out", type=Path, default=data_dir() / "synth")
    synth.add_argument("--n", type=int, default=20000)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--style", choices=STYLES, default="printed")
    _processing_args(synth)
    imp = sub.add_parser("import", help="import a dataset from one of the supported layouts")
    imp.add_argument("--format", required=True, choices=sorted(IMPORTERS))
    imp.add_argument("--src", type=Path, required=True,
                     help="the source folder, or an archive of it (.tar.xz, .tgz, .zip: unpacked beside "
                     "--out, removed afterwards); never written to")
    imp.add_argument("--out", type=Path, required=True)
    imp.add_argument("--labels", help="tsv: FILE.tsv (filename<TAB>latex[<TAB>split])")
    ink = imp.add_argument_group("inkml (pen traces: CROHME, MathWriting)")
    ink.add_argument("--split-dirs", metavar="SPLIT=FOLDER,...",
                     help="split by folder, e.g. test=TestINKMLGT (default: folders named train/valid/test)")
    ink.add_argument("--ink-label", dest="label_field", choices=LABEL_FIELDS,
                     help="annotation holding the LaTeX (default auto: truth, normalizedLabel, label)")
    ink.add_argument("--ink-symbol-px", dest="symbol_px", type=float,
                     help="median stroke extent (about one symbol) in pixels before downsampling (32)")
    ink.add_argument("--ink-stroke-px", dest="stroke_px", type=float, help="pen width in pixels (3)")
    imp.add_argument("--canonical", action=argparse.BooleanOptionalAction, default=None,
                     help="one spelling per formula (docs/DATASETS.md table; default on for inkml only)")
    _processing_args(imp)
    return parser


_COMMAND_KEYS = {"command", "out", "n", "seed", "style", "format", "src", "labels"}
_INK_FLAGS = {"split_dirs": "--split-dirs", "label_field": "--ink-label", "symbol_px": "--ink-symbol-px",
              "stroke_px": "--ink-stroke-px"}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in _COMMAND_KEYS and v is not None}
    if options.get("max_tokens") == 0:
        options["max_tokens"] = None
    try:
        if args.command == "synth":
            out = synth_dataset(args.out, args.n, args.seed, args.style, **options)
        else:
            if args.labels is not None:
                options["labels"] = args.labels
            ink_given = [flag for key, flag in _INK_FLAGS.items() if key in options]
            if ink_given and args.format != "inkml":
                raise ValueError(f"{ink_given[0]} is for --format inkml only")
            out = import_dataset(args.format, args.src, args.out, **options)
    except (OSError, NoUsableDataError, ValueError) as e:  # OSError: an unreadable or unwritable path
        print(f"error: {e}", file=sys.stderr)
        return 2
    manifest = load_manifest(out)
    print(f"prepared {out}: {manifest['counts']}, {manifest['dropped_count']} dropped (see manifest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
