"""`make gpu-check`'s script, run as `--dry-run` on the CPU: the same steps at toy sizes, so the day a GPU is
at hand the script is known to run end to end."""

from __future__ import annotations

import json

import torch

from benchmarks import gpu_check
from training.precision import choose_precision


def test_gpu_check_dry_run_trains_resumes_and_runs_packed_trials(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--dry-run", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["dry_run"] is True
    assert result["environment"]["precision"] == choose_precision(torch.device("cpu"), "auto").mode
    resumed = result["train_resume"]
    assert resumed["resume_ok"] and resumed["resumed_epochs"] == [1, 2, 3]
    assert resumed["img_per_s_epoch1"] > 0 and resumed["img_per_s_epoch3_resumed"] > 0
    assert resumed["decode_ms_per_formula"] > 0
    packed = result["packed_smoke"]
    assert packed["exit_code"] == 0 and packed["trials"] == gpu_check.DRY["smoke_trials"]
    assert set(packed["states"]) <= {"COMPLETE", "PRUNED"}


def test_the_largest_transformer_is_the_top_of_every_range():
    config = gpu_check.largest_params("transformer")
    model = config["model"]
    assert model["cut_after"] == 4 and model["stage2"] == "r50" and model["stage4"] == "r34"
    assert model["d_model"] == 384 and model["nhead"] == 8 and model["num_layers"] == 6
    assert model["dim_feedforward"] == 1024 and config["trainer"]["batch_size"] == 32
