"""A Transformer checkpoint as two ONNX graphs and greedy decoding on ONNX Runtime, outside PyTorch.

    python -m training export-onnx --checkpoint best.pt --out DIR
    python -m training predict --onnx DIR --images DIR --out results.txt

DIR holds `encoder.onnx` (images (B, 1, H, W) in 0-1 -> every decoder layer's cross-attention keys and
values, (B, heads, S, head size) each), `decoder_step.onnx` (one position: the previous tokens' ids (B,),
the step, the cross-attention keys/values and the self-attention cache so far (B, heads, t, head size)
per layer -> the next token's logits (B, V) and the cache grown by one position) and `model.json` (the
vocabulary, the image and pen options of the checkpoint's dataset, the special ids and the decoder's
shape). Batch, height, width, feature positions and cache length are dynamic axes, so any bucket and
batch size run. The step is the same arithmetic as `TransformerDecoderLayer.step` with the cache grown by
concatenation instead of written in place (ONNX graphs do not mutate their inputs).

Model 1 (the LSTM decoder) is not exported: its state is not a cache of keys and values, and no user has
asked for it yet; the command says so.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data_prep.vocab import EOS_ID, PAD_ID, SOS_ID, Vocab
from training.checkpoint import load_checkpoint, load_model

OPSET = 17
ENCODER, STEP, META = "encoder.onnx", "decoder_step.onnx", "model.json"


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        memory = self.model.encode(images)
        out = []
        for layer in self.model.layers:
            out.extend(t.contiguous() for t in layer.cross_attn.project_kv(memory))
        return tuple(out)


class _Step(nn.Module):
    """One decoder position with a concatenated cache: inputs tokens, step, then per layer (mk, mv,
    past_k, past_v); outputs logits, then per layer (present_k, present_v)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, step: Tensor, *kv: Tensor) -> tuple[Tensor, ...]:
        m = self.model
        x = m.embed(tokens) * math.sqrt(m.config.d_model)  # (B, E)
        x = m.embed_drop(x + m.pos_1d.table.index_select(0, step.reshape(1)).to(x.dtype))
        presents = []
        for i, layer in enumerate(m.layers):
            mk, mv, past_k, past_v = kv[4 * i : 4 * i + 4]
            x, k, v = _layer_step(layer, x, mk, mv, past_k, past_v)
            presents += [k, v]
        return (m.head(m.final_norm(x)), *presents)


def _layer_step(layer: nn.Module, x: Tensor, mk: Tensor, mv: Tensor, past_k: Tensor, past_v: Tensor):
    sa, ca = layer.self_attn, layer.cross_attn
    b, heads = x.shape[0], sa.nhead
    n1, n2, n3 = layer.norms

    def norm(module: nn.LayerNorm, y: Tensor) -> Tensor:
        return F.layer_norm(y, module.normalized_shape, module.weight, module.bias, module.eps)

    h = norm(n1, x) if layer.norm_first else x
    q, k, v = F.linear(h, sa.in_proj.weight, sa.in_proj.bias).reshape(b, 3, heads, 1, -1).unbind(1)
    keys, values = torch.cat((past_k, k), dim=2), torch.cat((past_v, v), dim=2)
    y = F.linear(_attend(q, keys, values).reshape(b, -1), sa.out.weight, sa.out.bias)
    x = x + y if layer.norm_first else norm(n1, x + y)
    h = norm(n2, x) if layer.norm_first else x
    q = F.linear(h, ca.in_proj.weight, ca.in_proj.bias).reshape(b, heads, 1, -1)
    y = F.linear(_attend(q, mk, mv).reshape(b, -1), ca.out.weight, ca.out.bias)
    x = x + y if layer.norm_first else norm(n2, x + y)
    ff_in, activation, _, ff_out = layer.ff
    h = norm(n3, x) if layer.norm_first else x
    y = F.linear(activation(F.linear(h, ff_in.weight, ff_in.bias)), ff_out.weight, ff_out.bias)
    return (x + y if layer.norm_first else norm(n3, x + y)), keys, values


def _attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Softmax attention written out: opset 17 has no attention op, and the exporter's decomposition of
    scaled_dot_product_attention depends on the torch version."""
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def export_onnx(checkpoint: Path, out: Path) -> Path:
    """Writes encoder.onnx, decoder_step.onnx and model.json into `out`; returns `out`."""
    model, vocab, config = load_model(checkpoint, torch.device("cpu"))
    if getattr(config.model, "kind", None) != "transformer":
        raise ValueError(f"ONNX export supports the Transformer family (model 2); {checkpoint} is a "
                         f"{config.model.kind!r} model")  # fmt: skip
    model = model.float().eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layers, heads = len(model.layers), model.layers[0].self_attn.nhead
    head_size = config.model.d_model // heads
    kv_names = [f"{kind}{i}" for i in range(layers) for kind in ("mk", "mv")]
    images = torch.rand(2, 1, 64, 256)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer chatter
        torch.onnx.export(
            _Encoder(model), (images,), str(out / ENCODER), dynamo=False, opset_version=OPSET,
            input_names=["images"], output_names=kv_names,
            dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                          **{n: {0: "batch", 2: "positions"} for n in kv_names}},
        )  # fmt: skip
        memory_kv = _Encoder(model.eval())(images)
        step_inputs = [torch.full((2,), SOS_ID), torch.tensor(1)]
        step_names, step_axes = ["tokens", "step"], {"tokens": {0: "batch"}}
        for i in range(layers):
            past = torch.zeros(2, heads, 1, head_size)
            step_inputs += [memory_kv[2 * i], memory_kv[2 * i + 1], past, past.clone()]
            names = [f"mk{i}", f"mv{i}", f"past_k{i}", f"past_v{i}"]
            step_names += names
            for name, axis in zip(names, ("positions", "positions", "past", "past"), strict=True):
                step_axes[name] = {0: "batch", 2: axis}
        present = [f"present_{kind}{i}" for i in range(layers) for kind in ("k", "v")]
        step_axes.update({"logits": {0: "batch"}, **{n: {0: "batch", 2: "length"} for n in present}})
        torch.onnx.export(
            _Step(model), tuple(step_inputs), str(out / STEP), dynamo=False, opset_version=OPSET,
            input_names=step_names, output_names=["logits", *present], dynamic_axes=step_axes,
        )  # fmt: skip
    model.eval()  # the exporter may leave the module in training mode
    ckpt = load_checkpoint(checkpoint)
    meta = {
        "vocab": list(vocab.id_to_token), "layers": layers, "heads": heads, "head_size": head_size,
        "max_output_len": config.model.max_output_len, "pos_table_len": int(model.pos_1d.table.shape[0]),
        "image_options": ckpt.get("image_options"), "ink_options": ckpt.get("ink_options"),
        "checkpoint": str(checkpoint), "opset": OPSET,
    }  # fmt: skip
    (out / META).write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
    return out


class OnnxPredictor:
    """Greedy decoding on ONNX Runtime, the same rule as `models.decoding.greedy_decode` (PAD and SOS
    never emitted, a finished row pads, stop when every row has ended)."""

    def __init__(self, folder: Path, threads: int | None = None):
        import onnxruntime as ort

        folder = Path(folder)
        if not (folder / META).is_file():
            raise FileNotFoundError(f"{folder} has no {META}: write it with python -m training export-onnx")
        self.meta = json.loads((folder / META).read_text(encoding="utf-8"))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(folder / ENCODER), options, providers=providers)
        self.step = ort.InferenceSession(str(folder / STEP), options, providers=providers)
        self.vocab = Vocab(self.meta["vocab"])

    def predict(self, inputs: list[Path | np.ndarray], batch_size: int = 32) -> list[Any]:
        """PredictionRows as `training.predict.Predictor` gives them, decoded by ONNX Runtime."""
        from data_prep.ink import InkOptions
        from training.predict import image_options, prepared_batches

        options = image_options(self.meta["image_options"])
        ink = InkOptions.from_dict(self.meta["ink_options"])
        rows, batches = prepared_batches(inputs, options, ink, batch_size)
        for batch in batches:
            images = np.stack([p for _, p in batch])[:, None].astype(np.float32) / 255.0
            for (index, _), seq in zip(batch, self.decode(images), strict=True):
                rows[index].prediction = " ".join(self.vocab.decode(seq))
        return rows

    def decode(self, images: np.ndarray, max_len: int | None = None) -> list[list[int]]:
        """images (B, 1, H, W) float32 in 0-1 -> token ids per row, EOS and after removed."""
        m = self.meta
        max_len = min(max_len or m["max_output_len"], m["pos_table_len"])
        memory_kv = self.encoder.run(None, {"images": images.astype(np.float32)})
        b = images.shape[0]
        cache = [np.zeros((b, m["heads"], 0, m["head_size"]), np.float32) for _ in range(2 * m["layers"])]
        tokens = np.full(b, SOS_ID, dtype=np.int64)
        finished = np.zeros(b, dtype=bool)
        out = np.full((b, max_len), PAD_ID, dtype=np.int64)
        for t in range(max_len):
            feed: dict[str, Any] = {"tokens": tokens, "step": np.array(t, dtype=np.int64)}
            for i in range(m["layers"]):
                feed.update({f"mk{i}": memory_kv[2 * i], f"mv{i}": memory_kv[2 * i + 1],
                             f"past_k{i}": cache[2 * i], f"past_v{i}": cache[2 * i + 1]})  # fmt: skip
            logits, *cache = self.step.run(None, feed)
            logits[:, [PAD_ID, SOS_ID]] = -np.inf
            best = logits.argmax(axis=-1)
            out[:, t] = np.where(finished, PAD_ID, best)
            finished |= best == EOS_ID
            tokens = best
            if finished.all():
                break
        return [_strip(row) for row in out]


def _strip(row: np.ndarray) -> list[int]:
    seq = []
    for tok in row.tolist():
        if tok == EOS_ID:
            break
        if tok not in (PAD_ID, SOS_ID):
            seq.append(tok)
    return seq


def parity(checkpoint: Path, folder: Path, images: list[np.ndarray], batch_size: int = 32,
           tolerance: float = 1e-3) -> dict[str, float]:  # fmt: skip
    """Token-for-token comparison of ONNX Runtime's greedy decoding with PyTorch's on `images` (uint8
    (H, W) crops of one dataset). A row that differs is a near tie when, at its first differing step,
    PyTorch's top two logits for the shared prefix are within `tolerance` of each other."""
    from collections import defaultdict

    from models.decoding import greedy_decode

    model, _, _ = load_model(checkpoint, torch.device("cpu"))
    onnx = OnnxPredictor(folder)
    groups: dict[tuple[int, ...], list[np.ndarray]] = defaultdict(list)
    for pixels in images:
        groups[pixels.shape].append(pixels)
    same = ties = total = 0
    for group in groups.values():
        for i in range(0, len(group), batch_size):
            batch = np.stack(group[i : i + batch_size])[:, None].astype(np.float32) / 255.0
            theirs = onnx.decode(batch)
            with torch.no_grad():
                tensor = torch.from_numpy(batch)
                memory = model.encode(tensor)  # once: the decode and the near-tie check share it
                ours = greedy_decode(model, tensor, memory=memory).sequences
            for row, (a, b) in enumerate(zip(ours, theirs, strict=True)):
                total += 1
                if a == b:
                    same += 1
                elif _near_tie(model, memory[row : row + 1], a, b, tolerance):
                    ties += 1
    return {"onnx_rows": total, "onnx_identical": same, "onnx_near_ties": ties,
            "onnx_identical_frac": same / total if total else 0.0}  # fmt: skip


def _near_tie(model: nn.Module, memory: Tensor, a: list[int], b: list[int], tolerance: float) -> bool:
    a, b = [*a, EOS_ID], [*b, EOS_ID]
    first = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    prefix = torch.tensor([[SOS_ID, *a[:first]]])
    with torch.no_grad():
        logits = model.decode(memory, prefix)[0, -1].float()
    logits[[PAD_ID, SOS_ID]] = float("-inf")
    top = torch.topk(logits, 2).values
    return bool(top[0] - top[1] <= tolerance * max(1.0, float(top[0].abs())))
