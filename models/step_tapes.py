"""Per-step operations of a teacher-forced recurrent decoder whose gradients for what every step shares
(the attention memory, a weight) are taken once for all steps.

Teacher forcing with input feeding attends step by step, and autograd's backward of each step's
`keys @ query` and `weights @ memory` is an outer product the size of the whole memory (B x S x H,
~10 MB at batch 16 over a 320-position feature map), accumulated into the memory's gradient step after
step: on a CPU that was a third of model 1's training step. The memory's gradient is linear in the
per-step gradients, so `AttentionTape` records the small ones (each step's score and context gradients,
B x S and B x M) and its gate turns them into the memory's gradients with two batched matmuls (contracting
over the steps) once every step's backward has run. The values and every gradient equal plain autograd's
up to float summation order.

    tape = AttentionTape(keys, memory)          # keys (B, S, H), memory (B, S, M)
    context = tape.attend(query)                # per step: query (B, H) -> context (B, M)

A weight used at every step has the same problem at a smaller size (each step's gradient is an outer
product over the batch), so `MatmulTape` keeps each step's input and output gradient and takes the
weight's gradient as one matmul over every step's rows, as nn.LSTM's own backward does.

    w = MatmulTape(weight)                      # weight (In, Out)
    y = w.addmm(bias, x)                        # per step: bias + x @ weight

Both tapes work in one dtype (no autocast inside a step); `teacher_forcing_tapes` says when to use them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class AttentionTape:
    """The per-step records of one teacher-forced sequence; `attend` once per step, in order."""

    def __init__(self, keys: Tensor, memory: Tensor):
        self.queries: list[Tensor] = []  # (B, H) each, in keys' dtype
        self.weights: list[Tensor] = []  # (B, S) each, in memory's dtype
        self.score_grads: dict[int, Tensor] = {}  # step -> (B, S); backward fills these last step first
        self.context_grads: dict[int, Tensor] = {}  # step -> (B, M)
        # every step reads the memory through the gate, so the gate's backward runs after all of theirs
        self.keys, self.memory = _Gate.apply(keys, memory, self)

    def attend(self, query: Tensor) -> Tensor:
        return _Step.apply(query, self.keys, self.memory, self, len(self.queries))


def plain_attention(query: Tensor, keys: Tensor, memory: Tensor) -> Tensor:
    """One step's context with plain autograd (decoding, or no gradient wanted)."""
    return _attention(query, keys, memory)[0]


def _attention(query: Tensor, keys: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
    # a row vector times the keys' transpose, not the keys times a column: the same numbers, but a CPU's
    # batched matrix-vector product in the latter shape runs ~10x slower (memory-bound either way)
    scores = torch.bmm(query[:, None].to(keys.dtype), keys.transpose(1, 2))[:, 0]  # (B, S)
    weights = torch.softmax(scores.float(), dim=-1).to(memory.dtype)
    return torch.bmm(weights[:, None], memory)[:, 0], weights  # (B, M), (B, S)


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, query: Tensor, keys: Tensor, memory: Tensor, tape: AttentionTape, step: int):
        context, weights = _attention(query, keys, memory)
        tape.queries.append(query.detach().to(keys.dtype))
        tape.weights.append(weights)
        ctx.tape, ctx.step, ctx.query_dtype = tape, step, query.dtype
        ctx.save_for_backward(keys, memory, weights)
        return context

    @staticmethod
    def backward(ctx: Any, grad_context: Tensor):
        keys, memory, weights = ctx.saved_tensors
        grad_context = grad_context.to(memory.dtype)
        grad_weights = torch.bmm(grad_context[:, None], memory.transpose(1, 2))[:, 0].float()  # (B, S)
        w = weights.float()
        grad_scores = w * (grad_weights - (grad_weights * w).sum(dim=-1, keepdim=True))  # softmax's backward
        grad_scores = grad_scores.to(keys.dtype)
        grad_query = torch.bmm(grad_scores[:, None], keys)[:, 0].to(ctx.query_dtype)  # (B, H)
        ctx.tape.score_grads[ctx.step] = grad_scores
        ctx.tape.context_grads[ctx.step] = grad_context
        return grad_query, None, None, None, None  # the memory's share waits for the gate


class _Gate(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, keys: Tensor, memory: Tensor, tape: AttentionTape):
        ctx.tape = tape
        ctx.set_materialize_grads(False)
        return keys.view_as(keys), memory.view_as(memory)

    @staticmethod
    def backward(ctx: Any, grad_keys: Tensor | None, grad_memory: Tensor | None):
        tape: AttentionTape = ctx.tape
        steps = sorted(tape.score_grads)  # a step whose output no loss used has no record
        if not steps:
            return grad_keys, grad_memory, None
        score_grads = torch.stack([tape.score_grads[t] for t in steps], dim=2)  # (B, S, T)
        queries = torch.stack([tape.queries[t] for t in steps], dim=1)  # (B, T, H)
        context_grads = torch.stack([tape.context_grads[t] for t in steps], dim=1)  # (B, T, M)
        weights = torch.stack([tape.weights[t] for t in steps], dim=2)  # (B, S, T)
        keys_grad = torch.bmm(score_grads, queries)
        memory_grad = torch.bmm(weights, context_grads)
        tape.score_grads.clear()
        tape.context_grads.clear()
        if grad_keys is not None:  # another use of the keys outside the steps
            keys_grad = keys_grad + grad_keys
        if grad_memory is not None:
            memory_grad = memory_grad + grad_memory
        return keys_grad, memory_grad, None


class MatmulTape:
    """`bias + x @ weight` at every step of one sequence, the weight's gradient deferred to the last."""

    def __init__(self, weight: Tensor):
        self.inputs: list[Tensor] = []
        self.output_grads: dict[int, Tensor] = {}
        self.weight = _WeightGate.apply(weight, self)

    def addmm(self, bias: Tensor | None, x: Tensor) -> Tensor:
        """`bias + x @ weight` (`x @ weight` with no bias)."""
        return _Addmm.apply(bias, x, self.weight, self, len(self.inputs))


class _Addmm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, bias: Tensor | None, x: Tensor, weight: Tensor, tape: MatmulTape, step: int):
        tape.inputs.append(x.detach())
        ctx.tape, ctx.step = tape, step
        ctx.save_for_backward(weight)
        return x.mm(weight) if bias is None else torch.addmm(bias, x, weight)

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        (weight,) = ctx.saved_tensors
        ctx.tape.output_grads[ctx.step] = grad
        grad_x = grad.mm(weight.t()) if ctx.needs_input_grad[1] else None
        grad_bias = grad if ctx.needs_input_grad[0] else None
        return grad_bias, grad_x, None, None, None


class _WeightGate(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, weight: Tensor, tape: MatmulTape):
        ctx.tape = tape
        ctx.set_materialize_grads(False)
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx: Any, grad_weight: Tensor | None):
        tape: MatmulTape = ctx.tape
        steps = sorted(tape.output_grads)
        if not steps:
            return grad_weight, None
        inputs = torch.cat([tape.inputs[t] for t in steps])  # (steps * B, In)
        grads = torch.cat([tape.output_grads[t] for t in steps])  # (steps * B, Out)
        tape.output_grads.clear()
        total = inputs.t().mm(grads)
        return (total if grad_weight is None else total + grad_weight), None


def teacher_forcing_tapes(*tensors: Tensor) -> bool:
    """Whether a teacher-forced loop over these should use the tapes: a gradient is wanted, and no autocast
    is on (a step's matmul under autocast runs in another dtype than the tape's backward assumes)."""
    if not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors):
        return False
    return not torch.is_autocast_enabled(tensors[0].device.type)
