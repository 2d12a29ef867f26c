"""A missing real dataset (crohme) names the exact import command, from ../shared/data's archive if any."""

from __future__ import annotations

import re
import shlex

import pytest

from core.paths import data_dir
from data_prep.__main__ import build_parser
from data_prep.ensure import ensure_dataset


def _hint(monkeypatch, shared) -> str:
    monkeypatch.setenv("IM2LATEX_SHARED_DATA", str(shared))
    with pytest.raises(FileNotFoundError) as caught:
        ensure_dataset("crohme")
    return str(caught.value)


def _make_args(hint: str) -> list[str]:
    """The argv inside `make data ARGS="..."`."""
    return shlex.split(re.search(r'make data ARGS="([^"]*)"', hint).group(1))


def test_missing_crohme_with_the_shared_archive_offers_to_import_it(isolated_home, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    archive = shared / "crohme-inkml.tar.xz"
    archive.write_bytes(b"not really xz")  # only its presence matters to the hint
    hint = _hint(monkeypatch, shared)
    assert hint.count("make data") == 1 and "&&" not in hint  # one command, run as it is
    assert "--format inkml" in hint and "--split-dirs test=TestINKMLGT" in hint
    assert f"--out {data_dir() / 'crohme'}" in hint
    args = build_parser().parse_args(_make_args(hint))  # the hint is a command the CLI accepts
    assert (args.src, args.format, args.split_dirs) == (archive, "inkml", "test=TestINKMLGT")
    assert (args.split_ratio, args.downsample) == ([0.9, 0.1, 0.0], 4)
    assert not (data_dir() / "crohme").exists()  # a real dataset is never fetched or built on the spot


def test_missing_crohme_without_the_archive_says_what_crohme_is(isolated_home, tmp_path, monkeypatch):
    hint = _hint(monkeypatch, tmp_path / "no-shared-data")
    assert "crohme-inkml.tar.xz" not in hint
    assert "--format inkml --src DIR" in hint and "--split-dirs test=TestINKMLGT" in hint
    assert "with DIR (or its .tar.xz / .zip) holding CROHME's InkML" in hint
    assert "TrainINKML/" in hint and "TestINKMLGT/" in hint
    assert build_parser().parse_args(_make_args(hint)).format == "inkml"


def test_an_archive_elsewhere_under_another_name_is_not_offered(isolated_home, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    (shared / "crohme-inkml.tar.xz").mkdir(parents=True)  # a folder of that name is not the archive
    hint = _hint(monkeypatch, shared)
    assert str(shared / "crohme-inkml.tar.xz") not in hint and "with DIR (or its" in hint
