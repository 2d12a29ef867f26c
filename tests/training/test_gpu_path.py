"""The CUDA code paths, checked without a GPU: resume from a checkpoint whose tensors sit on another
device, the precision choice, fp16 loss scaling, a training step that never reads the device back,
loader workers, cuDNN autotuning, and which errors count as out-of-memory or as a dead GPU."""

from __future__ import annotations

import math

import pytest
import torch

from data_prep.augment import AugmentConfig
from data_prep.dataset import Batch
from models import build_model
from tests.training._helpers import tiny_config
from training import checkpoint as ckpt_io
from training import precision as precision_module
from training.config import load_train_config
from training.cuda_faults import is_out_of_memory, is_sticky_cuda_error
from training.errors import NonFiniteLossError
from training.loop import train
from training.precision import Precision, StepScaler, choose_precision
from training.runtime import CUDNN_BENCHMARK_MAX_SHAPES, configure_cudnn, loader_workers
from training.step import LossMeter, StepSetup, sync_interval, train_step


class _OnTheGpu:
    """A tensor as `torch.load(map_location="cuda")` leaves it: usable only once copied to the host."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def numpy(self):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first")

    def cpu(self) -> torch.Tensor:
        return self.tensor


def test_the_default_precision_trains_in_what_this_cpu_does_best(overfit_data, tmp_path):
    """`trainer.amp: auto` (tiny_config pins fp32 for the exactness tests): bf16 and channels-last
    convolutions on a CPU with bf16 instructions, the loss and checkpoint still fp32."""
    from tests.training._helpers import Recorder

    cfg = load_train_config(tiny_config(overfit_data, trainer={"epochs": 1, "amp": "auto",
                                                               "decode_speed_formulas": 2}))
    recorder = Recorder()
    result = train(cfg, tmp_path / "auto", callbacks=[recorder])
    expected = choose_precision(torch.device("cpu"), "auto").mode
    assert recorder.started["precision"] == expected
    assert math.isfinite(result.history[0]["train/loss"]) and result.decode_speed
    weights = ckpt_io.load_checkpoint(result.best_checkpoint)["model"]
    assert all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point())
    if expected == "bf16":
        model, _, _ = ckpt_io.load_model(result.best_checkpoint)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] > 1)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_rng_state_restores_from_tensors_on_another_device():
    state = ckpt_io.rng_state()
    expected = [torch.rand(3), __import__("numpy").random.rand(3)]
    state["numpy"][1] = _OnTheGpu(state["numpy"][1])
    state["torch"] = _OnTheGpu(state["torch"])
    ckpt_io.set_rng_state(state)
    again = [torch.rand(3), __import__("numpy").random.rand(3)]
    torch.testing.assert_close(expected[0], again[0])
    assert (expected[1] == again[1]).all()


def test_resume_reads_last_pt_onto_the_cpu(overfit_data, tmp_path, monkeypatch):
    cfg = load_train_config(tiny_config(overfit_data, trainer={"epochs": 2, "decode_speed_formulas": 0}))
    train(load_train_config(tiny_config(overfit_data, trainer={"epochs": 1, "decode_speed_formulas": 0})),
          tmp_path / "run")
    seen = []
    real_load = torch.load

    def spying_load(path, map_location=None, **kw):
        seen.append(map_location)
        return real_load(path, map_location=map_location, **kw)

    monkeypatch.setattr(ckpt_io.torch, "load", spying_load)
    result = train(cfg, tmp_path / "run", resume_from=tmp_path / "run" / "last.pt")
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert seen and seen[0] == "cpu", "last.pt must be read onto the host, whatever the training device"


def test_precision_follows_the_device_capability(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(precision_module, "cuda_capability", lambda device: (8, 6))
    assert choose_precision(cuda, amp=True).mode == "bf16"
    monkeypatch.setattr(precision_module, "cuda_capability", lambda device: (7, 5))  # T4: bf16 emulated
    chosen = choose_precision(cuda, amp=True)
    assert chosen.mode == "fp16" and chosen.scales_loss and "7.5" in chosen.reason
    assert choose_precision(cuda, amp=False).mode == "fp32"
    assert choose_precision(cuda, amp="auto").mode == "fp16"
    monkeypatch.setattr(precision_module, "cuda_capability", lambda device: (6, 1))  # Pascal: no tensor cores
    assert choose_precision(cuda, amp="auto").mode == "fp32"


def test_cpu_precision_follows_its_bf16_instructions_and_the_model_family(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision_module, "cpu_native_bf16", lambda: "AVX512-BF16")
    chosen = choose_precision(cpu, "auto")
    assert chosen.mode == "bf16" and "AVX512-BF16" in chosen.reason
    assert choose_precision(cpu, False).mode == "fp32"
    lstm = choose_precision(cpu, "auto", cpu_bf16=False)
    assert lstm.mode == "fp32" and "LSTM" in lstm.reason, "model 1 stays fp32 by design"
    monkeypatch.setattr(precision_module, "cpu_native_bf16", lambda: None)
    assert choose_precision(cpu, "auto").mode == "fp32"
    assert choose_precision(cpu, True).mode == "bf16", "amp: true forces it"
    assert not choose_precision(cpu, "auto").scales_loss


def _one_weight(value: float) -> tuple[torch.nn.Parameter, torch.optim.Optimizer]:
    weight = torch.nn.Parameter(torch.tensor([value]))
    return weight, torch.optim.SGD([weight], lr=1.0)


def test_fp16_scaler_unscales_before_clipping():
    weight, optimizer = _one_weight(0.0)
    scaler = StepScaler(Precision("fp16", "test"), torch.device("cpu"))
    scaler.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaler.backward((weight * 3.0).sum())  # true gradient 3, scaled to 3072
    scaler.step(optimizer, [weight], clip=1.0)
    # clipped on the true gradient: norm 3 -> 1, one SGD step of lr 1. Clipping the scaled gradient and
    # unscaling after would move it by 1/1024.
    assert weight.item() == pytest.approx(-1.0)


def test_fp16_scaler_skips_a_step_whose_gradients_overflowed_and_lowers_the_scale():
    weight, optimizer = _one_weight(2.0)
    scaler = StepScaler(Precision("fp16", "test"), torch.device("cpu"))
    scaler.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaler.backward((weight * math.inf).sum())
    scaler.step(optimizer, [weight], clip=1.0)
    assert weight.item() == 2.0, "the step with inf gradients was skipped"
    assert scaler.scaler.get_scale() == 512.0
    optimizer.zero_grad()
    scaler.backward((weight * 1.0).sum())
    scaler.step(optimizer, [weight], clip=0.0)
    assert weight.item() == pytest.approx(1.0), "the next finite step goes through"
    restored = StepScaler(Precision("fp16", "test"), torch.device("cpu"))
    restored.load_state_dict(scaler.state_dict())
    assert restored.scaler.get_scale() == scaler.scaler.get_scale(), "the scale survives a resume"


def test_bf16_and_fp32_steps_need_no_scaler_state():
    scaler = StepScaler(Precision("bf16", "test"), torch.device("cpu"))
    weight, optimizer = _one_weight(0.0)
    scaler.backward((weight * 2.0).sum())
    scaler.step(optimizer, [weight], clip=0.0)
    assert weight.item() == pytest.approx(-2.0) and scaler.state_dict() == {}


def test_a_training_step_never_reads_the_device_back():
    """On the meta device every read-back (item, float, bool, tolist of a device tensor) raises, so a step
    that completes there queued all its work without one host sync."""
    config = load_train_config(tiny_config("unused", augment={"enabled": True, "mixup_prob": 1.0}))
    with torch.device("meta"):
        model = build_model(config.model, 40)
    meta = torch.device("meta")
    setup = StepSetup(
        device=meta, precision=Precision("fp32", "test"), scaler=StepScaler(Precision("fp32", "t"), meta),
        micro_batch=3, max_output_len=config.model.max_output_len, label_smoothing=0.1, grad_clip=1.0,
        augment=AugmentConfig(mixup_prob=1.0), mix_generator=torch.Generator().manual_seed(0),
    )
    targets = torch.randint(3, 40, (5, 12))
    targets[:, 0], targets[:, -1] = 1, 2
    batch = Batch(images=torch.rand(5, 1, 32, 96), targets=targets, ids=[str(i) for i in range(5)],
                  indices=list(range(5)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = train_step(model, batch, optimizer, setup)
    assert loss.device.type == "meta" and loss.dim() == 0
    with pytest.raises(Exception):  # noqa: B017 - what a sync would have hit
        loss.item()


def test_loss_meter_reads_back_once_per_interval_and_catches_a_nan_there():
    meter = LossMeter(torch.device("cpu"), every=4)
    reads = [meter.add(torch.tensor(float(i)), 1, i) for i in range(1, 10)]
    assert [r is not None for r in reads] == [False, False, False, True, False, False, False, True, False]
    assert reads[3] == pytest.approx(2.5) and meter.flush(1, 9) == pytest.approx(9.0)
    assert meter.mean == pytest.approx(5.0)
    assert sync_interval(torch.device("cuda")) > 1 and LossMeter(torch.device("cpu")).every == 1
    meter.add(torch.tensor(math.nan), 2, 1)
    with pytest.raises(NonFiniteLossError, match="epoch 2, step 3"):
        for step in (2, 3):
            meter.add(torch.tensor(1.0), 2, step, last_step=step == 3)


def test_loader_workers_on_cuda_only_and_from_this_process_share_of_cores(monkeypatch):
    from training import runtime

    assert loader_workers(None, torch.device("cpu")) == 0
    assert loader_workers(3, torch.device("cpu")) == 3, "an explicit data.num_workers wins"
    monkeypatch.setattr(runtime, "machine_cores", lambda: 12)
    monkeypatch.setattr(runtime, "shared_memory_bytes", lambda: 8 * 2**30)
    monkeypatch.setenv("OMP_NUM_THREADS", "6")  # a launcher split 12 cores between two GPU workers
    assert loader_workers(None, torch.device("cuda")) == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "64")  # more than the affinity mask allows
    assert loader_workers(None, torch.device("cuda")) == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert loader_workers(None, torch.device("cuda")) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    monkeypatch.setattr(runtime, "shared_memory_bytes", lambda: 64 * 2**20)  # docker's default /dev/shm
    assert loader_workers(None, torch.device("cuda")) == 0, "no room to hand batches over: none"


def test_loader_workers_run_one_thread_each_and_load_what_the_main_process_loads(overfit_data):
    from data_prep.dataset import build_loader
    from data_prep.vocab import Vocab

    class Threads(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.get_num_threads()

    assert list(torch.utils.data.DataLoader(Threads(), num_workers=2)) == [torch.tensor([1])] * 2
    vocab = Vocab.load(overfit_data / "vocab.json")
    batches = [list(build_loader(overfit_data, "train", vocab, 4, num_workers=w)) for w in (0, 2)]
    assert [b.ids for b in batches[0]] == [b.ids for b in batches[1]]
    assert all(torch.equal(a.images, b.images) for a, b in zip(*batches, strict=True))


def test_cudnn_autotuning_only_for_few_image_sizes():
    before = torch.backends.cudnn.benchmark
    try:
        assert configure_cudnn(torch.device("cuda"), CUDNN_BENCHMARK_MAX_SHAPES) is True
        assert torch.backends.cudnn.benchmark is True
        assert configure_cudnn(torch.device("cuda"), 80) is False  # auto buckets: 70-90 sizes
        assert torch.backends.cudnn.benchmark is False
        assert configure_cudnn(torch.device("cpu"), 1) is False
    finally:
        torch.backends.cudnn.benchmark = before


@pytest.mark.parametrize(
    ("error", "oom", "sticky"),
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True, False),
        (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`"), True, False),
        (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), True, False),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9"), True, False),
        (RuntimeError("CUDA error: device-side assert triggered"), False, True),
        (RuntimeError("CUDA error: an illegal memory access was encountered"), False, True),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 4x3)"), False, False),
        (ValueError("out of memory, said a ValueError"), False, False),
    ],
)
def test_errors_are_classified(error, oom, sticky):
    assert is_out_of_memory(error) is oom
    assert is_sticky_cuda_error(error) is sticky
