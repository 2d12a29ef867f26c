"""Every filesystem location the project uses, in one place.

The repository root can be overridden with IM2LATEX_HOME (tests point it at a temp dir).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def home() -> Path:
    return Path(os.environ.get("IM2LATEX_HOME", REPO_ROOT))


def data_dir() -> Path:
    return home() / "data"


def studies_dir() -> Path:
    return home() / "studies"


def exports_dir() -> Path:
    return studies_dir() / "exports"


def reports_dir() -> Path:
    return studies_dir() / "reports"


def mlruns_dir() -> Path:
    return home() / "mlruns"


def runs_dir() -> Path:
    """Checkpoints and per-run outputs (git-ignored)."""
    return home() / "runs"


def bench_results_file() -> Path:
    return home() / "benchmarks" / "results.json"


def shared_data_dir() -> Path:
    """The real data samples beside the checkout (absent in a user's clone)."""
    return Path(os.environ.get("IM2LATEX_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


DEFAULT_DATASET = "synth"

