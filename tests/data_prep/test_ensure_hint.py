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


def test_missing_crohme_with_the_shared_archive_offers_the_tar_command(isolated_home, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    archive = shared / "crohme-inkml.tar.xz"
    archive.write_bytes(b"not really xz")  # only its presence matters to the hint
    hint = _hint(monkeypatch, shared)
    assert f"tar xJf {archive} -C " in hint
    assert "--format inkml" in hint and "--split-dirs test=TestINKMLGT" in hint
    assert f"--out {data_dir() / 'crohme'}" in hint
    unpacked = re.search(r"mkdir -p (\S+) && tar xJf \S+ -C (\S+) &&", hint)
    assert unpacked and unpacked.group(1) == unpacked.group(2)
    args = build_parser().parse_args(_make_args(hint))  # the hint is a command the CLI accepts
    assert (str(args.src), args.format, args.split_dirs) == (unpacked.group(1), "inkml", "test=TestINKMLGT")
    assert (args.split_ratio, args.downsample) == ([0.9, 0.1, 0.0], 4)
    assert not (data_dir() / "crohme").exists()  # a real dataset is never fetched or built on the spot


def test_missing_crohme_without_the_archive_says_what_crohme_is(isolated_home, tmp_path, monkeypatch):
    hint = _hint(monkeypatch, tmp_path / "no-shared-data")
    assert "tar " not in hint and "crohme-inkml.tar.xz" not in hint
    assert "--format inkml --src DIR" in hint and "--split-dirs test=TestINKMLGT" in hint
    assert "with DIR holding CROHME's InkML" in hint and "TrainINKML/" in hint and "TestINKMLGT/" in hint
    assert build_parser().parse_args(_make_args(hint)).format == "inkml"


def test_an_archive_elsewhere_under_another_name_is_not_offered(isolated_home, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    (shared / "crohme-inkml.tar.xz").mkdir(parents=True)  # a folder of that name is not the archive
    hint = _hint(monkeypatch, shared)
    assert "tar " not in hint and "with DIR holding" in hint
