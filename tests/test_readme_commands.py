"""The README is a front door that does not lie: every `python -m …` command it and the other pages show
answers `--help`, every `make` target they show exists, the README stays short, and every relative link
in the pages resolves.

    .venv/bin/python -m pytest -q -p no:xdist tests/test_readme_commands.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "RESULTS.md"]
MAX_README_LINES = 200  # issue 24: a front door; the reference lives in docs/, the figures in RESULTS.md

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")
# `python -m pkg [subcommand]`: a subcommand is a lowercase word standing alone (not `tests/x.py`, `NAME`)
COMMAND = re.compile(r"python -m ([A-Za-z_][\w.]*)(?:\s+([a-z][\w-]*)(?![\w/.]))?")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.M)


def _code(text: str) -> list[str]:
    """Fenced blocks and inline code spans: where the pages show commands."""
    return FENCE.findall(text) + INLINE.findall(FENCE.sub("", text))


def documented_commands() -> list[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for page in PAGES:
        for code in _code(page.read_text(encoding="utf-8")):
            for module, sub in COMMAND.findall(code):
                found.add((module, sub) if sub else (module,))
    return sorted(found)


COMMANDS = documented_commands()


def test_the_pages_show_commands_at_all():
    assert ("search", "study") in COMMANDS and ("training", "predict") in COMMANDS, COMMANDS


# One fresh interpreter runs every command's `--help` in turn (runpy, as `python -m` does): one torch
# import for all of them instead of one per command.
HELP_RUNNER = """
import contextlib, io, json, runpy, sys
results = {}
for command in json.loads(sys.argv[1]):
    out = io.StringIO()
    sys.argv = [command[0], *command[1:], "--help"]
    code = 0
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_module(command[0], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code or 0
    except BaseException as exc:
        code = repr(exc)
    results[" ".join(command)] = [code, out.getvalue()]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def help_outputs(tmp_path_factory):
    # IM2LATEX_HOME: a command that ignored --help and started work would write into tmp_path, not the repo
    env = {**os.environ, "IM2LATEX_HOME": str(tmp_path_factory.mktemp("home"))}
    done = subprocess.run(
        [sys.executable, "-c", HELP_RUNNER, json.dumps(COMMANDS)], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_documented_command_exists(command, help_outputs):
    code, text = help_outputs[" ".join(command)]
    assert code == 0, f"python -m {' '.join(command)} --help: {code}"
    assert text.strip(), f"python -m {' '.join(command)} --help printed nothing"


def test_documented_make_targets_exist():
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M))
    shown = {(page.name, target) for page in PAGES for code in _code(page.read_text(encoding="utf-8"))
             for target in re.findall(r"(?<![\w.-])make ([a-z][\w-]*)", code)}  # fmt: skip
    assert not {(page, t) for page, t in shown if t not in targets}, sorted(targets)


def test_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move reference material to docs/"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]{2,}|`", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)
