"""A study database that goes away for a while (a restart, a failover, a network blip) pauses the worker
instead of killing its trial: every storage call that fails for want of a connection is retried with
backoff for up to SEARCH_STORAGE_RETRY_S seconds (default 300), said once in the log. Beyond that the
worker stops with one line (`StorageUnreachable`, exit 2); its RUNNING trial is failed and retried by the
RDB heartbeat on the next start. Connections the server dropped while it stayed up are replaced without
a retry (SQLAlchemy's pool_pre_ping, in search.study.storage).

A write whose commit reached the database but whose answer was lost is retried too: for the one write that
is not idempotent, a new trial, that leaves an extra trial that never started, which recovery fails by
its age (search.study.recovery).
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from sqlalchemy import exc as sqlalchemy_exc

log = logging.getLogger(__name__)

RETRY_ENV = "SEARCH_STORAGE_RETRY_S"
RETRY_S = 300.0
FIRST_WAIT_S, MAX_WAIT_S = 1.0, 30.0


class StorageUnreachable(RuntimeError):
    """The study database stayed unreachable past the retry budget; the message says what to do."""


def _lost_connection(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    if isinstance(cause, sqlalchemy_exc.DBAPIError) and cause.connection_invalidated:
        return True
    return isinstance(cause, sqlalchemy_exc.OperationalError | sqlalchemy_exc.InterfaceError)


class RetryingStorage(BaseStorage, BaseHeartbeat):
    """An RDBStorage whose calls survive the database going away for up to `budget_s` seconds."""

    def __init__(self, inner: RDBStorage, budget_s: float | None = None):
        self._inner = inner
        self._budget_s = float(os.environ.get(RETRY_ENV, RETRY_S)) if budget_s is None else budget_s

    def __getattr__(self, name: str) -> Any:  # attributes the wrapper does not retry (url, engine, ...)
        return getattr(self._inner, name)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        deadline, wait = None, FIRST_WAIT_S
        while True:
            try:
                return getattr(self._inner, name)(*args, **kwargs)
            except (optuna.exceptions.StorageInternalError, sqlalchemy_exc.SQLAlchemyError) as exc:
                if not _lost_connection(exc):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._budget_s
                    reason = str(exc.__cause__ or exc).splitlines()[0]
                    log.warning("the study database is unreachable (%s): retrying for up to %.0f s (%s)",
                                reason, self._budget_s, RETRY_ENV)  # fmt: skip
                if now >= deadline:
                    raise StorageUnreachable(
                        f"the study database stayed unreachable for {self._budget_s:.0f} s ({RETRY_ENV}); "
                        "once it is back, run the same command again: the interrupted trial is retried"
                    ) from None
                time.sleep(min(wait, max(deadline - now, 0.0)))
                wait = min(wait * 2, MAX_WAIT_S)


def _retried(name: str):
    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, *args, **kwargs)

    method.__name__ = name
    return method


# Every public method of RDBStorage goes through _call, its own optimised ones included, and the private
# ones Optuna calls on it: fail_stale_trials, and _CachedStorage (search.study.storage puts that in front).
PRIVATE_CALLS = ("_get_stale_trial_ids", "_get_trials", "_create_new_trial", "_get_best_trial_id",
                 "_set_trial_param")  # fmt: skip
for _name, _member in inspect.getmembers(RDBStorage, inspect.isfunction):
    if not _name.startswith("_") or _name in PRIVATE_CALLS:
        setattr(RetryingStorage, _name, _retried(_name))
RetryingStorage.__abstractmethods__ = frozenset()


def _record_heartbeat(self: RetryingStorage, trial_id: int) -> None:
    """Once, never retried: a heartbeat runs in Optuna's own thread, and one missed while the database is
    away is what a heartbeat is for (a worker gone that long is rightly taken for dead)."""
    try:
        self._inner.record_heartbeat(trial_id)
    except (optuna.exceptions.StorageInternalError, sqlalchemy_exc.SQLAlchemyError) as exc:
        if not _lost_connection(exc):
            raise
        log.debug("heartbeat of trial %d missed: the database is unreachable", trial_id)


RetryingStorage.record_heartbeat = _record_heartbeat
