"""Where a study lives: a journal file under studies/ by default, an RDB (PostgreSQL) for many machines.

    python -m search study smoke                                          # studies/smoke.journal
    python -m search study smoke --storage postgresql://user@host/db      # RDB with heartbeats

The journal file is safe for several local processes (SQLite is not); RDB storage beats a heartbeat so
a dead worker's trial is failed and queued again.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage

from core.paths import studies_dir
from search.study.retrying_storage import RetryingStorage

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 60
GRACE_PERIOD_S = 180  # a trial whose worker has been silent this long is failed and retried
HEARTBEAT_ENV = "SEARCH_HEARTBEAT_S"  # overrides the interval (grace: 3x); tests use seconds, not minutes
MAX_RETRY = 2
# One RDBStorage (one engine, one connection pool) per URL in a process: a caller that loads a study in a
# loop (a status poll, a test waiting for a trial) would otherwise open a pool per call and exhaust the
# server's connections. Keyed by pid too, so a forked child never shares its parent's connections.
_RDB_STORAGES: dict[tuple[str, int, int], RDBStorage] = {}
RDB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")


def journal_path(name: str) -> Path:
    return studies_dir() / f"{name}.journal"


def study_exists(name: str, url: str | None) -> bool:
    if url is None or url.endswith(".journal"):
        path = journal_path(name) if url is None else Path(url)
        if not path.exists():
            return False
    return name in optuna.get_all_study_names(create_storage(name, url))


def describe_storage(name: str, url: str | None) -> str:
    return str(journal_path(name)) if url is None else _redact(url)


def drop_partial_tail(path: Path) -> int:
    """Cut off a last journal record that lacks its newline; returns the bytes removed. A write cut short
    (a full disk) leaves one: Optuna skips it when reading, but its next append would join it and turn the
    journal into one that no longer loads. Done under the journal's own lock, so that a record another
    process is appending right now is never taken for a broken one."""
    if not _ends_partial(path):
        return 0
    lock = JournalFileSymlinkLock(str(path))  # the lock JournalFileBackend takes for every append
    lock.acquire()
    try:
        if not _ends_partial(path):
            return 0
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        with path.open("r+b") as f:
            f.truncate(keep)
    finally:
        lock.release()
    log.warning("journal %s: dropped a %d-byte last record that a write cut short had left (a full "
                "disk?); the records before it are intact", path, len(data) - keep)
    return len(data) - keep


def _ends_partial(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}" if ":" in creds else url
    return url


def _with_installed_driver(url: str) -> str:
    """SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the project ships psycopg2, so name it."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            try:
                import psycopg  # noqa: F401
            except ImportError:
                return "postgresql+psycopg2://" + url[len(bare) :]
    return url


def create_storage(name: str, url: str | None = None) -> optuna.storages.BaseStorage:
    """The storage for study `name`: `url` None -> studies/<name>.journal; a DB URL -> RDBStorage;
    a path ending in .journal -> that journal file; grpc://host:port -> Optuna's gRPC proxy (`python -m
    search storage-proxy`) in front of one database."""
    if url is not None and url.startswith("grpc://"):
        host, _, port = url[len("grpc://") :].rstrip("/").rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"storage {url!r}: expected grpc://host:port (make storage-proxy prints it)")
        return optuna.storages.GrpcStorageProxy(host=host, port=int(port))
    if url is None or url.endswith(".journal"):
        path = journal_path(name) if url is None else Path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        drop_partial_tail(path)
        return JournalStorage(JournalFileBackend(str(path)))
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    if scheme not in RDB_SCHEMES:
        raise ValueError(
            f"storage {url!r}: expected a postgresql://user@host/db URL, grpc://host:port (a storage "
            "proxy) or a path ending in .journal (leave it out for studies/<NAME>.journal)"
        )
    url = _with_installed_driver(url)
    interval = int(os.environ.get(HEARTBEAT_ENV, HEARTBEAT_INTERVAL_S))
    if scheme == "sqlite":
        log.warning(
            "SQLite storage is not safe for several worker processes; prefer the journal file default"
        )
    key = (url, interval, os.getpid())
    if key not in _RDB_STORAGES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            rdb = RDBStorage(
                url,
                engine_kwargs={"pool_pre_ping": True} if scheme != "sqlite" else None,
                heartbeat_interval=interval,
                grace_period=GRACE_PERIOD_S if interval == HEARTBEAT_INTERVAL_S else 3 * interval,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
            )
        # Optuna caches finished trials only for an RDBStorage it recognises, which the retrying wrapper
        # hides: without the cache every read fetches the whole study (2.3 against 0.8 CPU s per trial
        # in the load benchmark, benchmarks/RESULTS.md)
        _RDB_STORAGES[key] = rdb if scheme == "sqlite" else _CachedStorage(RetryingStorage(rdb))
    return _RDB_STORAGES[key]
