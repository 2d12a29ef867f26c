"""python -m benchmarks [NAME ...]: run every benchmarks/bench_*.py (or the named ones).
python -m benchmarks search [--quick]: the search-strategy comparison (benchmarks/search_arms.py).
python -m benchmarks crohme: crohme-cpu's best against hand tuning on CROHME 2013 (crohme_results.py).
python -m benchmarks precision: the fast mode's accuracy against fp32, two seeds (precision_accuracy.py).
python -m benchmarks load [--workers N]: many workers on one PostgreSQL study, all counted (load_bench.py).
python -m benchmarks compare REV [--bench NAME]: a bench at REV and here, back to back (compare_commits.py).

Each bench_* module has `run() -> dict` and merges its figures into benchmarks/results.json via core.bench,
with `<bench>_code_version` and `<bench>_device` beside them: the file gathers benches run at different
commits on different machines, and `device` alone names only the last. The search comparison takes hours
and writes its own benchmarks/search_results.json.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

from core.bench import record


def main(argv: list[str]) -> int:
    if argv[:1] == ["crohme"]:
        from benchmarks.crohme_results import main as crohme_main

        return crohme_main(argv[1:])
    if argv[:1] == ["precision"]:
        from benchmarks.precision_accuracy import main as precision_main

        return precision_main(argv[1:])
    if argv[:1] == ["compare"]:
        from benchmarks.compare_commits import main as compare_main

        return compare_main(argv[1:])
    if argv[:1] == ["load"]:
        from benchmarks.load_bench import main as load_main

        return load_main(argv[1:])
    if argv[:1] == ["search"]:
        from benchmarks.search_arms import main as search_main

        return search_main(argv[1:])
    known = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    unknown = sorted(set(argv) - set(known) - {"-h", "--help"})
    if unknown:  # checked before any bench runs: a typo must not cost the benches before it
        print(f"unknown bench {', '.join(unknown)}; choose from {' '.join(known)}", file=sys.stderr)
        return 2
    if {"-h", "--help"} & set(argv):
        print(f"{__doc__.strip()}\n\nbenches: {' '.join(known)}")
        return 0
    names = argv or known
    failed = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            figures = module.run()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"   FAILED: {exc!r}", flush=True)
            failed.append(name)
            continue
        from core.bench import describe_device
        from search.study.studies import code_version

        record({**figures, f"{name}_code_version": code_version(), f"{name}_device": describe_device()})
        for key, value in figures.items():
            print(f"   {key} = {value}")
        print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
