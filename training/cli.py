"""Command line of the training package.

    python -m training train CONFIG.yaml [--set key=value ...] [--out DIR] [--resume]
    python -m training predict --checkpoint C | --model models:/NAME-best/latest --images DIR|LIST --out R
    python -m training export-onnx --checkpoint C --out DIR
    python -m training evaluate --checkpoint C --data data/NAME --split test [--out metrics.json]

`train` prints the best checkpoint's path as its last line (scripts rely on it). It logs to MLflow when
MLFLOW_TRACKING_URI is set or the project's store (mlruns/mlflow.db, which any study creates) exists:
experiment `train`, one run per invocation, the trained model logged as an MLflow model
(`training.mlflow_logging`) and, for a config exported from a study, registered as `<study>-best` with the
study, trial and code version as tags. `predict` takes image and InkML (pen) files, from a checkpoint or a
logged/registered model. `evaluate` prints the metrics JSON on stdout (`exact_match` is the ExpRate,
`exprate_le1` / `exprate_le2` allow 1 / 2 token errors) and a one-line ExpRate summary on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from core.paths import runs_dir
from core.typed_config import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train one config; prints the best checkpoint path last")
    tr.add_argument("config", type=Path, help="a TrainConfig YAML (e.g. studies/exports/NAME.best.yaml)")
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. --set trainer.epochs=3 (repeatable)")
    tr.add_argument("--out", type=Path, help="run folder (default runs/<config name>-<time>)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    pr = sub.add_parser("predict", help="predict one formula per image, in input order")
    source = pr.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path)
    source.add_argument("--model", help="an MLflow model URI: models:/NAME-best/latest, runs:/ID/model")
    source.add_argument("--onnx", type=Path, help="a folder written by export-onnx (greedy, on ONNX Runtime)")
    pr.add_argument("--images", type=Path, required=True,
                    help="a folder of images and .inkml pen files, or a file listing paths")
    pr.add_argument("--out", type=Path, required=True, help="results.txt (a .jsonl is written beside it)")
    ox = sub.add_parser("export-onnx", help="write a Transformer checkpoint as ONNX (encoder + decoder step)")
    ox.add_argument("--checkpoint", type=Path, required=True)
    ox.add_argument("--out", type=Path, required=True, help="folder for the two graphs and model.json")
    ev = sub.add_parser("evaluate", help="score a checkpoint on a prepared dataset split (metrics JSON)")
    ev.add_argument("--checkpoint", type=Path, required=True)
    ev.add_argument("--data", required=True, help="a prepared dataset folder or a name under data/")
    ev.add_argument("--split", default="test")
    ev.add_argument("--out", type=Path, help="also write the metrics JSON here")
    ev.add_argument("--limit", type=int, help="score only the first N items")
    for p in (pr, ev):
        p.add_argument("--device", default="auto")
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--decode", choices=("greedy", "beam"), default="greedy")
        p.add_argument("--beam-width", type=int, default=5)
        p.add_argument("--max-len", type=int, help="decode at most this many tokens (default: the model's)")
        p.add_argument("--no-progress", action="store_true")
    return parser


def provenance(config_path: Path) -> dict[str, str]:
    """The `# key: value` header an export writes (study, trial, code_version, ...); {} for other files."""
    out: dict[str, str] = {}
    try:
        lines = config_path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        if not line.startswith("#"):
            break
        key, sep, value = line.lstrip("# ").partition(": ")
        if sep and key in ("study", "trial", "code_version", "dataset_hash", "score"):
            out[key] = value.strip()
    return out


def _log_model(config_path: Path, checkpoint: Path) -> None:
    """The trained model into the active MLflow run; an export's is registered as `<study>-best`."""
    from training.mlflow_logging import log_formula_model

    origin = provenance(config_path)
    name = f"{origin['study']}-best" if "study" in origin else None
    tags = {k: origin[k] for k in ("study", "trial", "code_version", "dataset_hash") if k in origin}
    uri = log_formula_model(checkpoint, registered_name=name, tags=tags)
    print(f"MLflow model {uri}" + (f", registered as {name} (models:/{name}/latest)" if name else ""))


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import load_train_config
    from training.loop import train

    config = load_train_config(args.config, args.overrides)
    if args.resume and args.out is None:
        raise SystemExit("--resume needs --out DIR: the folder of the run to continue")
    out = args.out or runs_dir() / f"{args.config.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    callbacks = []
    status = None
    if not config.trainer.progress:  # no tqdm bars (a log file, a spec's setting): one status line
        from training.progress import ProgressLine, StatusLine

        status = StatusLine()
        callbacks.append(ProgressLine(status))
    resume_from = out / "last.pt" if args.resume else None
    from training.mlflow_logging import training_run

    with training_run(out.name) as run:
        if run is not None:
            from training.mlflow_logging import MlflowRun

            callbacks.append(MlflowRun.active())
        try:
            result = train(config, out, callbacks=callbacks, resume_from=resume_from)
        finally:
            if status is not None:
                status.close()
        if run is not None:
            _log_model(args.config, result.best_checkpoint)
    best = result.best_metrics
    monitor = config.trainer.monitor
    score, epoch = best.get(monitor, float("nan")), best.get("epoch", "?")
    print(f"best {monitor} {score:.4g} at epoch {epoch}; run folder {out}")
    print(result.best_checkpoint)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from training.predict import PredictionRow, list_images, predict_images, write_predictions

    paths = list_images(args.images)
    if args.onnx:
        from training.onnx_export import OnnxPredictor

        rows = OnnxPredictor(args.onnx).predict(paths, batch_size=args.batch_size)
    elif args.model:
        from training.mlflow_logging import predict_with_model

        predictions = predict_with_model(args.model, paths)
        pairs = enumerate(zip(paths, predictions, strict=True))
        rows = [PredictionRow(i, Path(p).name, str(p), text) for i, (p, text) in pairs]
    else:
        rows = predict_images(args.checkpoint, paths, device=args.device, batch_size=args.batch_size,
                              method=args.decode, beam_width=args.beam_width, max_len=args.max_len,
                              progress=not args.no_progress)
    txt, jsonl = write_predictions(rows, args.out)
    failed = sum(r.error is not None for r in rows)
    print(f"{len(rows)} predictions ({failed} unreadable inputs left empty) -> {txt} and {jsonl}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from data_prep.dataset import build_loader
    from training.checkpoint import load_model
    from training.evaluate import evaluate
    from training.loop import resolve_dataset
    from training.runtime import resolve_device

    device = resolve_device(args.device)
    model, vocab, config = load_model(args.checkpoint, device)
    root = resolve_dataset(args.data)
    # the checkpoint's vocab, not the dataset's: ids must mean what they meant in training
    loader = build_loader(root, args.split, vocab, args.batch_size, shuffle=False, limit=args.limit)
    if not loader.dataset.has_formulas:
        raise SystemExit(f"split {args.split!r} of {root} has no formulas to score against; use predict")
    result = evaluate(model, loader, vocab, device=device, amp=config.trainer.amp,
                      label_smoothing=config.loss.label_smoothing, method=args.decode,
                      beam_width=args.beam_width, max_len=args.max_len, progress=not args.no_progress,
                      desc=f"evaluate {args.split}")
    report = {"checkpoint": str(args.checkpoint), "data": str(root), "split": args.split,
              "decode": args.decode, **result.metrics}
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    m = result.metrics
    # stdout stays one JSON document for scripts; the handwriting papers' headline figures go beside it
    print(f"ExpRate {m['exact_match']:.2f} %, <=1 error {m['exprate_le1']:.2f} %, <=2 errors "
          f"{m['exprate_le2']:.2f} % ({m['num_samples']:.0f} {args.split} samples)", file=sys.stderr)
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from training.onnx_export import export_onnx

    try:
        out = export_onnx(args.checkpoint, args.out)
    except ValueError as exc:  # a model family without an ONNX path
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"ONNX model in {out}: predict with python -m training predict --onnx {out} --images DIR --out R")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    commands = {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate,
                "export-onnx": cmd_export_onnx}
    try:
        return commands[args.command](args)
    except (ConfigError, FileNotFoundError) as exc:  # a user's mistake: the message says the fix
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
