"""`python -m search export | replay | report`: what a study found, read from its storage."""

from __future__ import annotations

import argparse
import signal
import sys

from search.study import studies


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `kill` ends a replay as Ctrl-C does: its MLflow run KILLED, not RUNNING


def cmd_export(args: argparse.Namespace) -> int:
    from search.results.export import export_pareto, export_top, scores_text

    study = studies.load_existing(args.name, args.storage)
    try:
        written = export_pareto(study) if args.pareto else export_top(study, args.top)
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 1
    for rank, (trial, path) in enumerate(written, start=1):
        params = ", ".join(f"{k}={v}" for k, v in trial.params.items())
        print(f"#{rank} trial {trial.number} score {scores_text(study, trial)} -> {path}\n    {params}")
    if len(study.directions) > 1 and not args.pareto:
        print(f"ranked by {study.metric_names[0] if study.metric_names else 'the first objective'} alone; "
              f"the Pareto front: python -m search export {args.name} --pareto")  # fmt: skip
    print(f"retrain: python -m training train {written[0][1]}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from search.results.replay import replay_trial

    signal.signal(signal.SIGTERM, _terminate_as_interrupt)  # the replay's MLflow run ends KILLED, not RUNNING
    try:
        replay = replay_trial(studies.load_existing(args.name, args.storage), args.trial)
    except KeyboardInterrupt:
        print("replay interrupted; its run folder and MLflow run (KILLED) keep what it did", file=sys.stderr)
        return 130
    print(f"trial {replay.trial} of {args.name}, {replay.metric} per epoch:\n{replay.table()}")
    verdict = "identical to the recorded curve" if replay.identical else "differs from the recorded curve"
    print(f"replay {verdict}; run folder {replay.out_dir}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from search.results.report import write_report

    study = studies.load_existing(args.name, args.storage)
    print(write_report(study))
    return 0
