"""python -m search {study,worker,ui,dashboard,export,report,replay} ...: the study harness's command line.

python -m search study smoke [--trials n] [--workers k] [--storage url]
python -m search worker smoke [--trials n] [--storage url]
python -m search ui [--port 5000]
python -m search dashboard smoke [--port 8080] [--storage url]
python -m search export smoke [--top k | --pareto] [--storage url]
python -m search report smoke [--storage url]
python -m search replay smoke --trial n [--storage url]
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import warnings
from collections import Counter
from typing import Any

import optuna
from optuna.trial import TrialState

from search.results import commands
from search.run import runner, serve, workers
from search.run.study_progress import StudyProgress, cpu_note
from search.spec.parse import StudySpec, load_spec
from search.study import devices, studies
from search.study.devices import DEVICE_CHOICES, require_device
from search.study.epoch_budget import epochs_spent
from search.study.recovery import WORKER_DIED, recover_stale_trials, worker_of
from search.study.retrying_storage import StorageUnreachable
from search.study.storage import describe_storage
from search.study.warm_start import STUDY_ATTR as WARM_ATTR
from search.study.warm_start import describe as describe_warm_start
from search.tracking import PARENT_ATTR, TRACKING_ERRORS, StudyTracker, store_uri, tracker_or_none
from training.cuda_faults import is_sticky_cuda_error

log = logging.getLogger(__name__)


def _trials_to_run(study: optuna.Study, requested: int | None, budget: int) -> int:
    if requested is not None:
        return requested
    return max(budget - studies.count_finished(study), 0)


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `kill`, `timeout`, docker stop, Slurm: end the trial as Ctrl-C does


def _announce(spec: StudySpec, n: int, gpus: list[str], slots: list[str | None]) -> None:
    where = f"{len(gpus)} GPU(s)" if gpus else "CPU (no GPU visible)"
    print(f"running {n} trial(s) with {len(slots)} worker(s) on {where}")
    if spec.objective.multi:
        unused = f" (pruner {spec.pruner.name!r} is not used)" if spec.pruner.name != "none" else ""
        print(f"multi-objective study: {spec.objective.label}. Optuna cannot prune multi-objective "
              f"trials, so every trial trains all its epochs{unused}; "
              f"`make export NAME={spec.name} PARETO=1` writes the Pareto front")  # fmt: skip
    note = cpu_note(spec.name, gpus)
    if note:
        print(note)


def cmd_study(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    spec = load_spec(args.name)
    problem = require_device(spec, args.device)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    mlflow_uri = store_uri()  # the store checked whole before anything is spent
    print(f"study {spec.name}: storage {describe_storage(spec.name, args.storage)}, MLflow {mlflow_uri}")
    study = studies.prepare_study(spec, args.storage)
    parent_run = study.user_attrs.get(PARENT_ATTR)
    if study.user_attrs.get(WARM_ATTR):
        print(describe_warm_start(study.user_attrs[WARM_ATTR]))
    n = _trials_to_run(study, args.trials, spec.budget.n_trials)
    target = studies.count_finished(study) + n
    if n == 0:
        print(
            f"study {spec.name} already has {studies.count_finished(study)} finished trials (budget "
            f"{spec.budget.n_trials}); pass --trials n to add more"
        )
        return _finish(study, "FINISHED", target, spec)
    gpus = devices.visible_gpus()
    slots = workers.plan_slots(args.workers, gpus, int(os.environ.get("TRIALS_PER_GPU", "1")))
    _announce(spec, n, gpus, slots)
    progress = StudyProgress(study, n, max_epochs=spec.budget.max_epochs)
    status, deaths = "FINISHED", []
    try:
        if len(slots) == 1:
            # one worker in this process: its device is the first visible GPU, slots[0] (setting
            # CUDA_VISIBLE_DEVICES here would come after visible_gpus() started CUDA, with no effect)
            runner.run_worker(spec, n, args.storage, callbacks=[progress], status=progress.trial_status,
                              train_fn=args.train_fn, share_budget=args.trials is None)
        else:
            left = functools.partial(_left_to_run, study, target, spec)
            deaths = workers.launch(spec.name, slots, n, args.storage, poll=progress, remaining=left)
    except KeyboardInterrupt:
        status = "KILLED"
        print("\ninterrupted: the running trial was ended and its MLflow run closed")
    except runner.GpuUnusable as exc:
        progress.close()
        print(f"error: {exc}", file=sys.stderr)
        _finish(study, "FAILED", target, spec)
        return workers.EXIT_GPU_UNUSABLE
    except (runner.StorageLost, StorageUnreachable, OSError) as exc:
        if isinstance(exc, OSError):  # the parent's own storage write (a worker's death, recovered)
            if runner.storage_write_error(exc) is None:
                raise
            exc = runner.StorageLost(study, exc)
        progress.close()  # first: the error must not land inside the status line
        print(f"error: {exc}", file=sys.stderr)
        # _finish would read and write the storage to summarise: only MLflow's parent run is closed
        _close_parent(tracker_or_none(spec.name, parent_run), "FAILED")
        return 2
    finally:
        progress.close()
    for report in deaths:
        print(f"warning: {report}; its trial was failed ({WORKER_DIED}) and enqueued again")
    return _finish(study, status, target, spec)


def _close_parent(tracker: StudyTracker | None, status: str) -> None:
    try:
        if tracker is not None:
            tracker.finish_parent(status)
    except Exception as exc:  # the study's results are in its storage; MLflow only mirrors them
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"warning: could not close the study's MLflow run ({reason})", file=sys.stderr)


def _epochs_spent(study: optuna.Study, spec: StudySpec) -> bool:
    """Whether the spec's epoch budget (`budget.total_epochs`) is used up: the study is done then."""
    return spec.budget.total_epochs is not None and epochs_spent(study) >= spec.budget.total_epochs


def _left_to_run(study: optuna.Study, target: int, spec: StudySpec, live: dict[int, int]) -> int:
    """Trials no live worker will run: the budget less what is counted, running, or still assigned to a
    live worker ({pid: its --trials}, less the trials it started)."""
    recover_stale_trials(study)  # the dead worker's trial runs again: it is left to do
    if _epochs_spent(study, spec):
        return 0
    trials = study.get_trials(deepcopy=False)
    started = Counter((worker_of(t) or {}).get("pid") for t in trials if t.state != TrialState.WAITING)
    pending = sum(max(share - started[pid], 0) for pid, share in live.items())
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return max(target - studies.count_finished(study) - running - pending, 0)


def _finish(study: optuna.Study, status: str, target: int, spec: StudySpec) -> int:
    """Close the parent run and say the truth: exit 0 only when the budget was met, nothing is left
    RUNNING by a dead worker and not every trial failed; 130 after Ctrl-C/SIGTERM."""
    tracker = tracker_or_none(study.study_name, study.user_attrs.get(PARENT_ATTR))
    recover_stale_trials(study, tracker, sweep_runs=True)
    info = studies.summary(study)
    finished = studies.count_finished(study)
    print(
        f"{info['finished']} finished trial(s): {info['complete']} complete, {info['pruned']} pruned, "
        f"{info['failed']} failed; {studies.best_text(info)}"
    )
    all_failed = info["failed"] > 0 and info["complete"] + info["pruned"] == 0
    if status == "FINISHED" and all_failed:
        status = "FAILED"
    try:  # drawing the figures takes seconds: a Ctrl-C then must not leave the parent run RUNNING
        if tracker is not None:
            runner.log_parent_summary(study, tracker)
    except KeyboardInterrupt:
        status = "KILLED"
    finally:
        _close_parent(tracker, status)
    if status == "KILLED":
        return 130
    if all_failed:
        name = study.study_name
        print(f"error: every trial of study {name} failed; each traceback is in its trial's user attrs and "
              f"MLflow run (python -m search report {name})", file=sys.stderr)  # fmt: skip
        return 1
    if finished < target and not _epochs_spent(study, spec):
        print(f"error: the budget was not met: {finished} of {target} trials counted (see the warnings "
              "above); run the same command again to finish it", file=sys.stderr)  # fmt: skip
        return 1
    if info["complete"]:
        print(f"next: python -m search export {study.study_name}  |  python -m search ui")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    # a worker joining from another machine has no index from workers.launch: its pid keeps its
    # sampler's stream apart from the others'
    index = os.environ.get(studies.WORKER_INDEX_ENV, "")  # set by workers.launch
    salt = int(index) if index.isdigit() else os.getpid()
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    study = studies.load_existing(args.name, args.storage)
    spec = studies.spec_from_study(study)
    # a GPU host without a usable GPU says so instead of training on the CPU; a worker that `study` launched
    # was placed by it (its --device applied, CUDA_VISIBLE_DEVICES set)
    problem = None if index.isdigit() else require_device(spec, args.device)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    n = _trials_to_run(study, args.trials, spec.budget.n_trials)
    progress = StudyProgress(study, n, enabled=not args.no_progress)
    devices.limit_gpu_memory()
    try:
        shared = args.trials is None
        runner.run_worker(spec, n, args.storage, callbacks=[progress], worker_salt=salt,
                          status=progress.trial_status, train_fn=args.train_fn, share_budget=shared)
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:
        # a sticky CUDA error that escaped a trial (a callback's CUDA call after a device-side assert) ends
        # this worker as a broken GPU does, so its launcher starts a fresh process rather than a retry
        if not isinstance(exc, runner.GpuUnusable) and not is_sticky_cuda_error(exc):
            raise
        progress.close()
        unusable = exc if isinstance(exc, runner.GpuUnusable) else runner.GpuUnusable(exc)
        print(f"error: {unusable}", file=sys.stderr)
        return workers.EXIT_GPU_UNUSABLE
    finally:
        progress.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m search", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    study = sub.add_parser("study", help="create or resume a study and run its trials")
    study.add_argument("name", help="a spec under studies/ (smoke, rnn, transformer) or a .yaml path")
    study.add_argument(
        "--trials", type=int, default=None, help="trials to run now (default: the rest of the budget)"
    )
    study.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: one per GPU, else 1)"
    )
    study.add_argument(
        "--storage", default=None, help="postgresql://… for many machines (default studies/NAME.journal)"
    )
    study.add_argument(
        "--device", choices=DEVICE_CHOICES, default="auto",
        help="auto: a GPU when one is usable (a GPU-sized spec stops without one); cpu: hide the GPUs; "
        "cuda: stop unless a GPU is usable",
    )
    study.set_defaults(func=cmd_study)
    worker = sub.add_parser("worker", help="join a running study (e.g. from another machine)")
    worker.add_argument("name")
    worker.add_argument("--trials", type=int, default=None)
    worker.add_argument("--storage", default=None)
    worker.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="as for study")
    worker.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)
    worker.set_defaults(func=cmd_worker)
    ui = sub.add_parser("ui", help="serve the MLflow UI for mlruns/ on 127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=serve.cmd_ui)
    dashboard = sub.add_parser("dashboard", help="serve optuna-dashboard on a study's storage, on 127.0.0.1")
    dashboard.add_argument("name")
    dashboard.add_argument("--port", type=int, default=8080)
    dashboard.add_argument("--storage", default=None, help="the study's storage URL (default its journal)")
    dashboard.set_defaults(func=serve.cmd_dashboard)
    proxy = sub.add_parser("storage-proxy", help="Optuna's gRPC proxy in front of a study database")
    proxy.add_argument("--storage", required=True, help="postgresql://user@host/db, the database it fronts")
    proxy.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines")
    proxy.add_argument("--port", type=int, default=13000)
    proxy.set_defaults(func=serve.cmd_storage_proxy)
    export = sub.add_parser("export", help="write the best trial's config to studies/exports/")
    export.add_argument("name")
    export.add_argument("--top", type=int, default=1)
    export.add_argument(
        "--pareto", action="store_true", help="a multi-objective study's front -> NAME.pareto-K.yaml"
    )
    export.add_argument("--storage", default=None)
    export.set_defaults(func=commands.cmd_export)
    replay = sub.add_parser("replay", help="train a trial again from its recorded config and compare")
    replay.add_argument("name")
    replay.add_argument("--trial", type=int, required=True)
    replay.add_argument("--storage", default=None)
    replay.set_defaults(func=commands.cmd_replay)
    report = sub.add_parser("report", help="write studies/reports/NAME.html")
    report.add_argument("name")
    report.add_argument("--storage", default=None)
    report.set_defaults(func=commands.cmd_report)
    return parser


def main(argv: list[str] | None = None, *, train_fn: Any = None) -> int:
    """`train_fn` replaces training.loop.train in the trials this process runs (tests, benchmarks)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    args = build_parser().parse_args(argv)
    args.train_fn = train_fn
    try:
        return args.func(args)
    except (FileNotFoundError, LookupError, ValueError, RuntimeError, *TRACKING_ERRORS) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only studies/ or mlruns/, a full disk: one line, not a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where} (check that it is writable)", file=sys.stderr)
        return 2
