import json

import pytest

from core.paths import data_dir
from data_prep import ensure
from data_prep.ensure import BUILTIN_DATASETS, ensure_dataset, import_dataset


def test_builtin_table_matches_the_contract():
    assert BUILTIN_DATASETS["synth"] == {"n": 20000, "seed": 0, "style": "printed"}
    assert BUILTIN_DATASETS["synth-small"] == {"n": 600, "seed": 0, "style": "printed"}
    assert BUILTIN_DATASETS["synth-handwritten"]["style"] == "handwritten"


def test_missing_builtin_is_rendered_once(isolated_home, monkeypatch, caplog):
    monkeypatch.setitem(ensure.BUILTIN_DATASETS, "synth-small", {"n": 15, "seed": 0, "style": "printed"})
    with caplog.at_level("WARNING"):
        root = ensure_dataset("synth-small")
    assert root == data_dir() / "synth-small" and "rendering built-in synth-small" in caplog.text
    stamp = (root / "manifest.json").stat().st_mtime_ns
    assert ensure_dataset("synth-small") == root and (root / "manifest.json").stat().st_mtime_ns == stamp
    assert ensure_dataset(root) == root  # a path works too
    assert json.loads((root / "manifest.json").read_text())["counts"]["train"] == 12


def test_missing_other_dataset_names_the_make_command(isolated_home):
    with pytest.raises(FileNotFoundError, match=r'make data ARGS="import --format'):
        ensure_dataset("my-course-data")
    with pytest.raises(FileNotFoundError, match=r'make data ARGS="synth --out .*synth --n 20000'):
        ensure_dataset(isolated_home / "elsewhere" / "synth")


def test_half_folder_is_not_mistaken_for_a_dataset(isolated_home):
    (data_dir() / "synth").mkdir(parents=True)
    (data_dir() / "synth" / "stray.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        ensure_dataset("synth")


@pytest.mark.slow
def test_real_synth_small_builds_quickly(isolated_home):
    import time

    start = time.perf_counter()
    root = ensure_dataset("synth-small")
    assert time.perf_counter() - start < 60  # the smoke study depends on it on 2 cores
    counts = json.loads((root / "manifest.json").read_text())["counts"]
    assert counts == {"train": 480, "validate": 60, "test": 60}


def test_import_dataset_is_the_python_entry(im2latex_sample, tmp_path):
    root = import_dataset("im2latex", im2latex_sample, tmp_path / "im", workers=0)
    assert json.loads((root / "manifest.json").read_text())["counts"]["validate"] == 85
    with pytest.raises(ValueError, match="valid formats"):
        import_dataset("csv", im2latex_sample, tmp_path / "x")
    with pytest.raises(TypeError, match="valid options"):
        import_dataset("im2latex", im2latex_sample, tmp_path / "y", keep_multilines=True)
