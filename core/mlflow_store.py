"""The MLflow store under mlruns/ (`mlflow.db`, SQLite): created whole or not at all. Shared by the
study harness (search.tracking) and a plain training run that registers its model (training.cli); the
migrations themselves are MLflow's, run by the caller's `migrate` (training.mlflow_logging.migrate_store):
this module never imports MLflow.

Creating the store runs MLflow's schema migrations, which take seconds. A process killed meanwhile (the
OOM killer, a dropped SSH session) used to leave a half-migrated `mlflow.db` that every later command
died on with a raw SQLAlchemy traceback. Now a new store is built under a temporary name and linked into
place only when complete; a half-made store from before is named with what to do about it.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

from core.paths import mlruns_dir
from core.processes import pid_alive

log = logging.getLogger(__name__)
_CHECKED: set[Path] = set()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else the project's store `sqlite:///mlruns/mlflow.db` (which may not
    exist yet: `ready_uri` makes it)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


def ready_uri(migrate: Callable[[str], None]) -> str:
    """tracking_uri(), with the project's store created whole first (a half-made one is a StoreError)."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        ensure_store(mlruns_dir() / "mlflow.db", migrate)
    return tracking_uri()


def project_store_in_use() -> bool:
    """Whether runs are tracked here already: MLFLOW_TRACKING_URI set, or the project's store exists."""
    return bool(os.environ.get("MLFLOW_TRACKING_URI")) or (mlruns_dir() / "mlflow.db").exists()


class StoreError(RuntimeError):
    """The MLflow store cannot be used as it is; the message says why and what to do."""


def ensure_store(path: Path, migrate: Callable[[str], None]) -> None:
    """Create the SQLite store at `path` atomically (`migrate(uri)` runs MLflow's migrations on a new
    store), or check that the existing one is whole (once per process)."""
    path = Path(path)
    if path in _CHECKED:
        return
    if path.exists():
        _remove_abandoned(path)
        problem = half_made(path)
        if problem:
            raise StoreError(problem)
    else:
        _create(path, migrate)
    _CHECKED.add(path)


def _create(path: Path, migrate: Callable[[str], None]) -> None:
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(path)
        quiet = [logging.getLogger(n) for n in ("mlflow.store.db.utils", "alembic.runtime.migration")]
        levels = [q.level for q in quiet]
        for q in quiet:  # "Creating initial MLflow database tables...": the store's birth is not news
            q.setLevel(logging.WARNING)
        try:
            migrate(f"sqlite:///{tmp}")
        finally:
            for q, level in zip(quiet, levels, strict=True):
                q.setLevel(level)
        try:
            os.link(tmp, path)  # fails if another process linked its own store first: then use that one
        except FileExistsError:
            log.debug("another process created %s first", path)
    except Exception as exc:
        if path.exists():
            return
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(
            f"cannot create the MLflow store {path} ({reason}): make {path.parent} writable, or point "
            "MLFLOW_TRACKING_URI at another store"
        ) from None
    finally:
        for leftover in (tmp, *(tmp.with_name(tmp.name + s) for s in ("-journal", "-wal", "-shm"))):
            leftover.unlink(missing_ok=True)


def _remove_abandoned(path: Path) -> None:
    """Temporary stores of creating processes that are gone (killed mid-migration), with SQLite's
    sidecar files (`-journal`, `-wal`, `-shm`) of a transaction the kill cut short."""
    for tmp in path.parent.glob(f".{path.name}.creating-*"):
        pid = re.match(rf"\.{re.escape(path.name)}\.creating-(\d+)", tmp.name)
        if pid and not pid_alive(int(pid.group(1))):
            tmp.unlink(missing_ok=True)


def half_made(path: Path) -> str | None:
    """Why the store at `path` is not a complete MLflow store, or None when it is."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            version = (
                db.execute("SELECT * FROM alembic_version").fetchall() if "alembic_version" in tables else []
            )
            runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    except sqlite3.DatabaseError as exc:
        return f"{path} is not a readable SQLite database ({exc}); move it aside: mv {path} {path}.broken"
    leftovers = sorted(t for t in tables if t.startswith("_alembic_tmp_"))
    if not leftovers and version:
        return None
    what = f"table {leftovers[0]} remains" if leftovers else "it has no schema version"
    if runs:
        return (
            f"{path} was left half-migrated ({what}) but holds {runs} runs: keep it. Back it up "
            f"(cp {path} {path}.bak), then finish the migration with: mlflow db upgrade sqlite:///{path}"
        )
    return (
        f"{path} was left half-made ({what}): a process was killed while it created the MLflow store. It "
        f"holds no runs; move it aside and rerun: mv {path} {path}.broken"
    )
