"""python -m data_prep synth|import: flags reach the pipeline and land in the manifest."""

import json
import subprocess
import sys

from core.paths import REPO_ROOT
from data_prep.__main__ import main
from tests.data_prep._ingest_fixtures import COURSE_BAD, make_course


def test_synth_command(tmp_path, capsys):
    out = tmp_path / "s"
    assert (
        main(["synth", "--out", str(out), "--n", "10", "--seed", "2", "--workers", "0", "--margin", "2"]) == 0
    )
    m = json.loads((out / "manifest.json").read_text())
    assert m["options"]["n"] == 10 and m["options"]["seed"] == 2 and m["options"]["image"]["margin"] == 2
    assert "prepared" in capsys.readouterr().out
    assert main(["synth", "--out", str(out), "--n", "10"]) == 2  # exists: needs --force
    assert main(["synth", "--out", str(out), "--n", "5", "--force", "--workers", "0"]) == 0


def test_import_command_with_switches(tmp_path):
    src = make_course(tmp_path / "src")
    out = tmp_path / "out"
    argv = ["import", "--format", "course", "--src", str(src), "--out", str(out), "--keep-multiline",
            "--buckets", "400x100,800x200", "--split-ratio", "0.5", "0.5", "0", "--workers", "0"]  # fmt: skip
    assert main(argv) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["options"]["formula"]["keep_multiline"] is True
    assert set(m["buckets"]) <= {"400x100", "800x200"}
    multiline = {k for k, v in COURSE_BAD.items() if v[2] == "multi-line"}
    assert not multiline & {d["id"] for d in m["dropped"]}


def test_module_runs_as_a_program(tmp_path):
    result = subprocess.run([sys.executable, "-m", "data_prep", "import", "--format", "tsv", "--src",
                             str(tmp_path / "none"), "--out", str(tmp_path / "o")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "does not exist" in result.stderr
