"""python -m benchmarks compare REV [--bench bench_models]: one benchmark at an earlier commit and at this
checkout, on this machine, one right after the other.

A speed-up claimed against "the previous commit" means nothing across machines (a figure committed from
a 2-core Xeon with AVX512-BF16 and one measured on an AVX2-only EPYC differ by 2x before any code
changes), so both sides run here, back to back, in fresh processes: REV from a temporary git worktree
(sharing this checkout's .venv), then the working tree as it is. Writes
benchmarks/compare_<bench>.json: the CPU, both code versions, both sets of figures and, for every numeric
figure, after / before.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from core.bench import describe_device
from core.paths import home, shared_data_dir
from search.study.studies import code_version

ROOT = Path(__file__).resolve().parents[1]
RUN = "import json, importlib; print('FIGURES ' + json.dumps(importlib.import_module('benchmarks.{}').run()))"


def figures_at(checkout: Path, bench: str) -> dict:
    """Runs `bench` in a fresh interpreter inside `checkout` and returns its figures. Both sides read the
    same data: this checkout's home (data/, runs/) and shared samples, not the temporary worktree's."""
    env = dict(os.environ)
    env.setdefault("IM2LATEX_HOME", str(home()))
    env.setdefault("IM2LATEX_SHARED_DATA", str(shared_data_dir()))
    done = subprocess.run(
        [sys.executable, "-c", RUN.format(bench)], cwd=checkout, env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("FIGURES ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{bench} failed in {checkout}:\n{done.stderr[-2000:]}")
    return json.loads(lines[-1][len("FIGURES ") :])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("rev", help="the earlier commit, e.g. HEAD~1 or a hash")
    parser.add_argument(
        "--bench", default="bench_models", help="a benchmarks/bench_*.py module (%(default)s)"
    )
    args = parser.parse_args(argv)
    rev = subprocess.run(
        ["git", "rev-parse", "--short", args.rev], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if rev.returncode != 0:
        raise SystemExit(f"error: {args.rev!r} is not a commit of this repository ({rev.stderr.strip()})")
    before_rev = rev.stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), before_rev], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        try:
            (tree / ".venv").symlink_to(ROOT / ".venv")
            print(f"[compare] {args.bench} at {before_rev} ...", flush=True)
            before = figures_at(tree, args.bench)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    print(f"[compare] {args.bench} at {code_version()} (this checkout) ...", flush=True)
    after = figures_at(ROOT, args.bench)
    ratios = {
        key: round(after[key] / value, 3)
        for key, value in before.items()
        if isinstance(value, (int, float)) and isinstance(after.get(key), (int, float)) and value
    }
    out = ROOT / "benchmarks" / f"compare_{args.bench}.json"
    record = {"device": describe_device(), "before": {"code_version": before_rev, **before},
              "after": {"code_version": code_version(), **after}, "after_over_before": ratios}  # fmt: skip
    out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    for key, ratio in sorted(ratios.items()):
        print(f"   {key}: {before[key]} -> {after[key]} ({ratio}x)")
    print(f"[compare] wrote {out.relative_to(ROOT)}")
    return 0
