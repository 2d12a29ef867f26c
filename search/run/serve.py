"""The two browser views of a study: `python -m search ui` (MLflow: every trial's run and curves) and
`python -m search dashboard NAME` (optuna-dashboard on the study's own storage: parameter importances,
parallel coordinates, contours, the live trial table). Both bind 127.0.0.1, print their URLs, and stop
with Ctrl-C or SIGTERM leaving no process behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys

from core.paths import mlruns_dir
from search.study.storage import create_storage, describe_storage, journal_path
from search.study.studies import load_existing
from search.tracking import get_client, store_uri

log = logging.getLogger(__name__)
# optuna-dashboard's own command line, through this interpreter (its console script may not be on PATH)
DASHBOARD = "from optuna_dashboard._cli import main; main()"


def cmd_ui(args: argparse.Namespace) -> int:
    uri = store_uri()  # created whole here, not half-made by the server
    artifacts = (mlruns_dir() / "artifacts").resolve()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(args.port),
           "--backend-store-uri", uri, "--default-artifact-root", artifacts.as_uri()]  # fmt: skip
    print(f"MLflow UI for {uri} on http://127.0.0.1:{args.port} (Ctrl-C stops it)")
    print("  a study's trials are the child runs under its one parent run: expand it in the runs table")
    _print_study_links(args.port)
    # MLflow's job runner and its huey consumers serve GenAI jobs, not trials: ~2 GB and 7 processes
    return serve(cmd, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def cmd_dashboard(args: argparse.Namespace) -> int:
    load_existing(args.name, args.storage)  # a missing study is one line, before any server starts
    if args.storage:
        cmd = [sys.executable, "-c", DASHBOARD, args.storage]
    else:
        cmd = [sys.executable, "-c", DASHBOARD, str(journal_path(args.name)), "--storage-class",
               "JournalFileStorage"]  # fmt: skip
    cmd += ["--host", "127.0.0.1", "--port", str(args.port)]
    # the dashboard's URLs name studies by their id in the storage
    study_id = create_storage(args.name, args.storage).get_study_id_from_name(args.name)
    root = f"http://127.0.0.1:{args.port}/dashboard"
    print(f"optuna-dashboard for study {args.name} on {root}/studies/{study_id} (every study here: "
          f"{root}; Ctrl-C stops it)")
    return serve(cmd)


def cmd_storage_proxy(args: argparse.Namespace) -> int:
    """Optuna's gRPC proxy in front of one database: workers join with `--storage grpc://host:port` and the
    database holds the proxy's connections instead of a pool per worker process. Through the proxy there
    are no RDB heartbeats (docs/CLUSTER.md says what that costs)."""
    if not args.storage or args.storage.startswith("grpc://") or args.storage.endswith(".journal"):
        raise ValueError("storage-proxy fronts a database: give --storage postgresql://user@host/db")
    from optuna.storages._grpc.server import make_server

    # create_storage puts Optuna's trial cache in front of the database, as Optuna's docs ask for a proxy
    storage = create_storage("storage-proxy", args.storage)
    _stop_on_ctrl_c_and_sigterm()
    where = f"grpc://{args.host}:{args.port}"
    print(f"storage proxy for {describe_storage('', args.storage)} on {where}: workers join with "
          f"--storage {where} (STORAGE={where}); Ctrl-C stops it", flush=True)  # fmt: skip
    # run_grpc_proxy_server, but stopped on Ctrl-C: left running, its thread pool kept the process alive
    server = make_server(storage, args.host, args.port)
    server.start()
    try:
        while server.wait_for_termination(timeout=1.0):  # True: timed out, still serving
            pass  # an untimed wait blocks in C, where Ctrl-C and SIGTERM never reach Python
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(grace=2).wait()
    return 0


def serve(cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Runs a server in its own process group until it exits, Ctrl-C or SIGTERM; the whole group goes with
    it (servers start workers of their own), so the port is free again afterwards."""
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)  # `kill` must stop the server too
    server = subprocess.Popen(cmd, start_new_session=True, env={**os.environ, **(env or {})})
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_ctrl_c_and_sigterm() -> None:
    """Ctrl-C and SIGTERM end the server as KeyboardInterrupt whatever the launcher left: a process started
    with SIGINT ignored (by its parent, or as a background job) keeps ignoring it. Under the full test suite
    a proxy sat out the test's Ctrl-C, its main thread still in the serving loop (a faulthandler dump)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _print_study_links(port: int) -> None:
    """Direct links to each study's runs table (MLflow 3 otherwise opens on its GenAI overview)."""
    try:
        experiments = get_client().search_experiments()
    except Exception as exc:  # an empty or unreadable store still gets its UI
        log.debug("no experiments listed: %r", exc)
        return
    for experiment in experiments:
        if experiment.name != "Default":
            print(
                f"  {experiment.name}: http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs"
            )
