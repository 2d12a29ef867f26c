"""GPU faults as a worker meets them, with a fake training loop: allocation failures that are not
`OutOfMemoryError`, a retry that resumes, a CUDA error that kills the worker, last.pt clean-up, the memory
share of packed workers and a GPU study on a machine without a usable GPU."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from search.cli import main
from search.run import workers
from search.run.runner import GpuUnusable, run_worker
from search.spec.parse import load_spec
from search.study import devices
from search.study.devices import gpu_problem, require_device
from search.study.studies import load_existing, prepare_study


def _study(name: str):
    spec = load_spec(name)
    prepare_study(spec, None)
    return spec


def test_a_cublas_allocation_failure_is_retried_like_an_out_of_memory(fake_study, fake_training):
    fake = fake_training(lambda c: "cublas_oom" if c.trainer.grad_accum_steps == 1 else "ok")
    study = run_worker(_study(fake_study), 1, None, train_fn=fake)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["oom_retries"] == 1
    assert [c.trainer.grad_accum_steps for c in fake.calls] == [1, 2]


def test_the_out_of_memory_retry_resumes_from_the_epochs_already_done(fake_study, fake_training):
    fake = fake_training(lambda c: "oom_at_3" if c.trainer.grad_accum_steps == 1 else "ok", write_last=True)
    study = run_worker(_study(fake_study), 1, None, train_fn=fake)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    assert fake.resumes == [(False, 1), (True, 3)], "the retry continues after epoch 2, from last.pt"
    assert sorted(trial.intermediate_values) == [1, 2, 3, 4]


def test_last_pt_is_deleted_when_a_trial_ends_and_kept_when_it_is_cut(fake_study, fake_training, monkeypatch):
    fake = fake_training(lambda c: "ok", write_last=True)
    study = run_worker(_study(fake_study), 3, None, train_fn=fake)
    trained = [t for t in study.trials if "trial_dir" in t.user_attrs]
    assert trained, "some trial trained"
    for trial in trained:  # completed or pruned: neither will resume
        assert not (Path(trial.user_attrs["trial_dir"]) / "last.pt").exists(), trial.number

    def cut_after_two_epochs(config, out_dir, *, callbacks, resume_from=None):  # a Ctrl-C after epoch 2
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        torch.save({"model": {}, "config": {}, "epoch": 2, "history": []}, Path(out_dir) / "last.pt")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_worker(load_spec(fake_study), 1, None, train_fn=cut_after_two_epochs)
    cut = load_existing(fake_study, None).get_trials()[3]
    assert (Path(cut.user_attrs["trial_dir"]) / "last.pt").exists(), "a cut trial keeps its resume point"


def test_a_sticky_cuda_error_fails_the_trial_and_ends_the_worker(
    fake_study, fake_training, capsys, monkeypatch
):
    fake = fake_training(lambda c: "sticky")
    spec = _study(fake_study)

    def dead_context():  # what any CUDA call does after a device-side assert
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", dead_context)
    with pytest.raises(GpuUnusable, match="device-side assert"):
        run_worker(spec, 4, None, train_fn=fake)
    trials = load_existing(fake_study, None).get_trials()
    assert len(fake.calls) == 1, "no later trial ran in the broken process"
    assert [t.state for t in trials] == [TrialState.FAIL] and trials[0].user_attrs["reason"] == "cuda_fatal"
    code = main(["worker", fake_study, "--trials", "2", "--no-progress"], train_fn=fake)
    assert code == workers.EXIT_GPU_UNUSABLE
    assert "unusable" in capsys.readouterr().err


def test_packed_workers_each_take_an_equal_share_of_the_gpu_memory(monkeypatch):
    fractions = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, *a: fractions.append(f))
    monkeypatch.setenv(devices.GPU_SHARE_ENV, "2")
    assert devices.limit_gpu_memory() == pytest.approx(devices.MEMORY_HEADROOM / 2)
    monkeypatch.setenv(devices.GPU_SHARE_ENV, "1")
    assert devices.limit_gpu_memory() is None
    assert fractions == [pytest.approx(devices.MEMORY_HEADROOM / 2)]


def test_launch_tells_each_worker_how_many_share_its_gpu_and_splits_the_cores(monkeypatch):
    envs = []

    class Proc:
        pid = 1000

        def __init__(self, cmd, env, cwd):
            envs.append(env)
            Proc.pid += 1
            self.pid = Proc.pid

        def poll(self):
            return 0

        returncode = 0

    monkeypatch.setattr(workers.subprocess, "Popen", Proc)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    workers.launch("x", ["0", "0", "1"], 3, None, poll_every_s=0)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "0", "1"]
    assert [e[devices.GPU_SHARE_ENV] for e in envs] == ["2", "2", "1"]
    assert all(int(e["OMP_NUM_THREADS"]) >= 1 for e in envs)


GPU_SPEC = """
dataset: fake-data
base: {trainer: {device: %s, epochs: 2}}
space: {optim.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}}
budget: {n_trials: 2, max_epochs: 2}
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a usable GPU")
def test_a_gpu_study_without_a_gpu_stops_with_the_reason_unless_the_cpu_is_asked_for(
    isolated_home, monkeypatch, capsys
):
    studies = isolated_home / "studies"
    studies.mkdir()
    # a GPU-sized spec is one with a CPU profile beside it (transformer / transformer-cpu)
    (studies / "big.yaml").write_text(textwrap.dedent(GPU_SPEC % "auto"), encoding="utf-8")
    (studies / "big-cpu.yaml").write_text(textwrap.dedent(GPU_SPEC % "auto"), encoding="utf-8")
    (studies / "pinned.yaml").write_text(textwrap.dedent(GPU_SPEC % "cuda"), encoding="utf-8")
    assert main(["study", "big"]) == 2
    err = capsys.readouterr().err
    assert "sized for a GPU" in err and gpu_problem() in err
    assert "make study NAME=big-cpu" in err and "--device cpu" in err
    assert len(err.strip().splitlines()) == 1
    assert not (studies / "big.journal").exists(), "nothing was started"
    assert require_device(load_spec("big-cpu"), "auto") is None, "the CPU profile runs anywhere"
    assert "--device cuda was asked for" in require_device(load_spec("big-cpu"), "cuda")
    # a spec that pins trainer.device: cuda cannot be sent to the CPU by hiding the GPUs
    assert "set it to auto" in require_device(load_spec("pinned"), "cpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert require_device(load_spec("big"), "cpu") is None
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "", "cpu hides the GPUs from this process and its workers"


def test_gpu_problem_names_the_usual_causes(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "CPU-only build" in gpu_problem()
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "hides every GPU" in gpu_problem()

    def no_driver():
        raise RuntimeError("Found no NVIDIA driver on your system.\nPlease check ...")

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(torch.cuda, "init", no_driver)
    assert gpu_problem() == "CUDA cannot start: Found no NVIDIA driver on your system."


def test_a_sticky_cuda_error_that_escapes_the_trials_still_ends_the_worker_as_unusable(
    fake_study, fake_training, capsys, monkeypatch
):
    """A device-side assert surfacing outside a trial (a callback's CUDA call after it) is the same broken
    GPU: the worker exits with EXIT_GPU_UNUSABLE, not as a user error, so its launcher replaces it."""
    from search.run import runner

    fake = fake_training()
    _study(fake_study)  # the study exists, as a worker joining it expects

    def escaped(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(runner, "run_worker", escaped)
    code = main(["worker", fake_study, "--trials", "1", "--no-progress"], train_fn=fake)
    assert code == workers.EXIT_GPU_UNUSABLE
    assert "unusable" in capsys.readouterr().err

    def plain_bug(*args, **kwargs):
        raise RuntimeError("a plain bug")

    monkeypatch.setattr(runner, "run_worker", plain_bug)
    code = main(["worker", fake_study, "--trials", "1", "--no-progress"], train_fn=fake)
    assert code == 2  # a one-line error, as before


def test_a_worker_joining_a_gpu_sized_study_without_a_gpu_says_so(
    fake_study, fake_training, capsys, monkeypatch
):
    """`make worker` on a host whose GPU is unusable stops with the reason instead of training on the CPU;
    DEVICE=cpu is the user's choice."""
    from search.study.studies import prepare_study

    spec = load_spec(fake_study)
    prepare_study(spec, None)
    monkeypatch.delenv("SEARCH_WORKER_INDEX", raising=False)
    no_gpu = lambda spec, device: None if device == "cpu" else "no GPU"  # noqa: E731
    monkeypatch.setattr("search.cli.require_device", no_gpu)
    fake = fake_training()
    assert main(["worker", fake_study, "--trials", "1", "--no-progress"], train_fn=fake) == 2
    assert capsys.readouterr().err.strip() == "error: no GPU" and not fake.calls
    args = ["worker", fake_study, "--trials", "1", "--no-progress", "--device", "cpu"]
    assert main(args, train_fn=fake) == 0
    assert len(fake.calls) == 1
