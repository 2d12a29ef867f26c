"""`make study NAME=crohme-cpu` on a machine without data/crohme: one line that says how to import it."""

from __future__ import annotations

from search.cli import main


def test_a_missing_crohme_says_how_to_import_it_and_leaves_no_study(isolated_home, monkeypatch, capsys):
    archive_home = isolated_home / "shared"
    archive_home.mkdir()
    (archive_home / "crohme-inkml.tar.xz").write_bytes(b"")
    monkeypatch.setenv("IM2LATEX_SHARED_DATA", str(archive_home))
    assert main(["study", "crohme-cpu", "--trials", "1"]) != 0
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(error) == 1, error
    assert "--format inkml" in error[0] and "--split-dirs test=TestINKMLGT" in error[0]
    assert f"--src {archive_home / 'crohme-inkml.tar.xz'}" in error[0]
    assert not list((isolated_home / "studies").glob("crohme-cpu.journal*"))  # nothing half-made
