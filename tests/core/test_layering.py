"""The layout is the data flow (docs/ARCHITECTURE.md): core -> data_prep -> models -> training -> search.
Upstream never imports downstream, no module imports a sibling that imports it back (function-level
imports included), and no module of the packages grows past 400 lines. Inside search/ the rooms are layered
the same way: spec -> tracking -> study -> trial -> results -> run -> cli."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.paths import REPO_ROOT

LAYERS = ["core", "data_prep", "models", "training", "search"]
MAX_LINES = 400
# search/'s rooms by job, lowest first (search/__init__.py lists what each holds)
SEARCH_ROOMS = [
    "search.spec", "search.tracking", "search.study", "search.trial", "search.results", "search.run",
    "search.cli", "search.__main__",
]  # fmt: skip


def _modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules `path` imports anywhere in its body (a `from a.b import c` of a module counts c)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        out |= {name for name in names if name in modules}
    return out


MODULES = _modules()
GRAPH = {name: _imports(path, MODULES) - {name} for name, path in MODULES.items()}


def test_upstream_never_imports_downstream():
    wrong = [
        f"{a} imports {b}"
        for a, targets in GRAPH.items()
        for b in targets
        if LAYERS.index(b.split(".")[0]) > LAYERS.index(a.split(".")[0])
    ]
    assert not wrong, wrong


def _room(module: str) -> int:
    return next(i for i, room in enumerate(SEARCH_ROOMS) if module == room or module.startswith(room + "."))


def test_search_rooms_never_import_a_later_room():
    rooms = [name for name in GRAPH if name.startswith("search.")]
    placed = [name for name in rooms if any(name == r or name.startswith(r + ".") for r in SEARCH_ROOMS)]
    unplaced = sorted(set(rooms) - set(placed))
    assert not unplaced, f"modules in no room of SEARCH_ROOMS: {unplaced}"
    wrong = [
        f"{a} imports {b}"
        for a in rooms
        for b in GRAPH[a]
        if b.startswith("search.") and _room(b) > _room(a)
    ]
    assert not wrong, wrong


def test_no_module_imports_a_sibling_that_imports_it_back():
    def package(name: str) -> str:
        return name.rsplit(".", 1)[0] if "." in name else name

    cycles = sorted(
        f"{a} <-> {b}"
        for a, targets in GRAPH.items()
        for b in targets
        if a < b and a in GRAPH.get(b, set()) and package(a) == package(b)
    )
    assert not cycles, cycles


@pytest.mark.parametrize("package", LAYERS)
def test_no_module_is_over_400_lines(package):
    sizes = {
        str(path.relative_to(REPO_ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for name, path in MODULES.items()
        if name.split(".")[0] == package
    }
    long = {path: n for path, n in sizes.items() if n > MAX_LINES}
    assert not long, long


SEARCH_MAX_FILE_LINES = 350
SEARCH_MAX_FUNCTION_LINES = 60


def test_search_files_and_functions_stay_small_enough_to_read():
    """A module of search/ fits in a few screens and a function in one (decorators and docstring
    included): what outgrows that is split by job, not left to grow."""
    long_files, long_functions = {}, {}
    for name, path in MODULES.items():
        if not name.startswith("search"):
            continue
        text = path.read_text(encoding="utf-8")
        where = str(path.relative_to(REPO_ROOT))
        if len(text.splitlines()) > SEARCH_MAX_FILE_LINES:
            long_files[where] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > SEARCH_MAX_FUNCTION_LINES:
                    long_functions[f"{where}:{node.name}"] = lines
    assert not long_files, long_files
    assert not long_functions, long_functions


def test_the_objective_reads_like_the_optuna_examples():
    """suggest -> build the config -> train with a report callback -> return: resume, out-of-memory
    retry and decode constraints live in search.trial's helpers, not in the objective's body."""
    tree = ast.parse(MODULES["search.trial"].read_text(encoding="utf-8"))
    objective = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrialObjective")
    call = next(n for n in objective.body if isinstance(n, ast.FunctionDef) and n.name == "__call__")
    assert call.end_lineno - call.lineno + 1 <= 40
