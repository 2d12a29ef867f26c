"""`make bench-precision`'s bookkeeping with the training replaced: same seeds and config for both modes,
the delta and speedup computed from the runs, finished runs kept and not trained again."""

from __future__ import annotations

import json
from types import SimpleNamespace

from benchmarks import precision_accuracy


def test_both_modes_train_the_same_config_and_seeds_and_a_rerun_keeps_finished_runs(
    isolated_home, monkeypatch
):
    trained = []

    def fake_train(config, out_dir):
        trained.append((config.trainer.amp, config.trainer.seed, config.trainer.epochs, config.model.d_model))
        fast = config.trainer.amp == "auto"
        val = 60.0 + config.trainer.seed + (0.5 if fast else 0.0)
        rate = 90.0 if fast else 50.0
        history = [{"images_per_s": rate}, {"images_per_s": rate}]
        return SimpleNamespace(best_metrics={"val/avg_score": val}, history=history)

    recorded = {}
    monkeypatch.setattr(precision_accuracy, "record", recorded.update)
    assert precision_accuracy.main([], train_fn=fake_train) == 0
    assert sorted(trained, key=str) == sorted([(False, 1, 8, 256), (False, 2, 8, 256), ("auto", 1, 8, 256),
                                               ("auto", 2, 8, 256)], key=str)
    assert recorded["fast_vs_fp32_val_avg_delta"] == 0.5
    assert recorded["fast_vs_fp32_train_speedup"] == 1.8
    assert len(recorded["precision_runs"]) == 4

    trained.clear()
    assert precision_accuracy.main([], train_fn=fake_train) == 0
    assert trained == [], "finished runs are read back, not trained again"
    kept = json.loads((isolated_home / "runs" / "precision-accuracy" / "fast-seed2.json").read_text())
    assert kept["val_avg"] == 62.5 and kept["mode"] == "fast"
