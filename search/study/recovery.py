"""Trials whose worker died (kill -9, the OOM killer, a dropped SSH session) are failed and run again.

    recover_stale_trials(study, tracker)   # at every worker's start and after each of its trials

The journal file has no heartbeat, so each trial records the host, pid and process start time of the
worker running it, in one storage write (user attr `worker`; three separate ones could leave a trial with
a host and no pid when the disk filled between them). A RUNNING trial of this host whose process is gone
(or whose pid now belongs to another process) is marked FAIL with `reason=worker_died` and its parameters
are enqueued again. A trial of another host is left alone: only that host can tell whether its worker
lives (RDB storage answers it with heartbeats, failed and retried here through Optuna's
`fail_stale_trials`). A RUNNING trial with no record at all (its first write failed, or it predates
records) is judged by its age. Either way the dead trial's MLflow run is closed as FAILED, and it does
not count against the budget.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from core.processes import pid_alive

log = logging.getLogger(__name__)

WORKER_DIED = "worker_died"  # user attr `reason` of a trial whose worker process died
INTERRUPTED = "interrupted"  # user attr `reason` of a trial cut short by Ctrl-C / SIGTERM
WORKER_ATTR = "worker"  # {"host", "pid", "started"}: who runs a trial
OLD_ATTRS = {"host": "worker_host", "pid": "worker_pid", "started": "worker_started"}  # journals before
UNRECORDED_GRACE_S = 120.0  # a trial writes its record first thing: one without it this long never will


def record_worker(trial: optuna.Trial) -> None:
    """Called as a trial starts: who runs it, so another process can tell later whether it still does."""
    pid = os.getpid()
    record = {"host": socket.gethostname(), "pid": pid, "started": _process_start(pid)}
    trial.set_user_attr(WORKER_ATTR, record)


def worker_of(trial: FrozenTrial) -> dict[str, Any] | None:
    """The trial's worker record (host, pid, started), from either layout; None when it has none."""
    record = trial.user_attrs.get(WORKER_ATTR)
    if isinstance(record, dict):
        return record
    if OLD_ATTRS["pid"] in trial.user_attrs:
        return {key: trial.user_attrs.get(attr) for key, attr in OLD_ATTRS.items()}
    return None


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux); tells a reused pid from the original."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of proc(5), counted after the command name


def worker_is_dead(trial: FrozenTrial) -> bool:
    worker = worker_of(trial)
    if worker is None:
        started = trial.datetime_start
        return started is not None and (datetime.now() - started).total_seconds() > UNRECORDED_GRACE_S
    if worker.get("host") != socket.gethostname() or not isinstance(worker.get("pid"), int):
        return False  # another host's worker: only that host (or an RDB heartbeat) can tell
    pid = worker["pid"]
    if pid == os.getpid():
        return False
    if not pid_alive(pid):
        return True
    started = worker.get("started")
    return started is not None and _process_start(pid) not in (None, started)


def recover_stale_trials(study: optuna.Study, tracker: Any = None, *, sweep_runs: bool = False) -> list[int]:
    """Fail and re-enqueue the trials of dead workers; close their MLflow runs. Returns their numbers.

    MLflow is searched for orphaned runs only when a trial was recovered here or `sweep_runs` (a study's
    start and end), not after every trial: one search_runs per trial is I/O for nothing on a healthy study."""
    recovered = []
    storage = study._storage  # Optuna's own fail_stale_trials works on the storage the same way
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not worker_is_dead(trial):
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, "reason", WORKER_DIED)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # another worker recovered it first
        keep = {k: trial.user_attrs[k] for k in ("baseline",) if k in trial.user_attrs}
        study.enqueue_trial(trial.params, user_attrs={**keep, "requeued_from": trial.number})
        recovered.append(trial.number)
    with warnings.catch_warnings():  # RDB heartbeats: Optuna fails and retries those trials itself
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        failed_before = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        optuna.storages.fail_stale_trials(study)
        heartbeat_failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))) > failed_before
    if recovered:
        log.warning(
            "trial(s) %s lost their worker: marked FAIL (%s) and enqueued again", recovered, WORKER_DIED
        )
    if tracker is not None and (recovered or heartbeat_failed or sweep_runs):
        tracker.close_orphaned_runs(study, lost=recovered)
    return recovered


def rerun_trials(trials: list[FrozenTrial]) -> set[int]:
    """Finished trials that run again and so do not count against the budget: cut by Ctrl-C/SIGTERM, lost
    with their worker, or failed by an RDB heartbeat and retried (Optuna's retry names the failed trial)."""
    retried = {t.system_attrs.get("failed_trial") for t in trials}
    return {
        t.number
        for t in trials
        if t.user_attrs.get("reason") in (INTERRUPTED, WORKER_DIED) or t.number in retried
    }
