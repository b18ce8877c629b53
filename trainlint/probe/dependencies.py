"""The ``dependencies`` check: what does one output really depend on?

One backward pass from one output row, with respect to the inputs (float inputs and the
outputs of every embedding lookup, made leaves), answers two questions at once:

* does sample 0's output depend on the inputs of other samples? With BatchNorm and dropout
  in eval mode nothing legitimate mixes samples, so this is ``view`` used as a transpose,
  a wrong ``reshape``, or attention across the batch;
* for a next-token model (the targets are the input ids shifted by one), does position
  ``t`` depend on tokens after ``t``? Then the causal mask is missing and the model
  reads the answer it must predict.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainlint.diagnostics import Finding
from trainlint.probe.batches import BatchKind, LABEL_KEYS, Runner, batch_size, tree_map
from trainlint.probe.codes import finding
from trainlint.probe.errors import ModuleStack
from trainlint.probe.spy import Lookup, LossCall, Spy, SpyLog

LEAK = 1e-5  # a dependency this small relative to the legitimate one is rounding
NEXT_TOKEN_SHARE, MIN_ALIGNED = 0.9, 4
_FROZEN = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


@dataclass
class Outcome:
    findings: list[Finding]
    summary: str
    ran: bool


def check(runner: Runner, batch: Any, stack: ModuleStack, seed: int) -> Outcome:
    size = batch_size(batch)
    if not size:
        return Outcome([], "not run: no batch dimension", False)
    leaves, spied = _leaf_batch(batch, runner.kind, size)
    with _frozen_statistics(runner.model), Spy(stack, leaf_lookups=True) as spy:
        forward = runner.forward(spied)
        loss = runner.loss(forward)
    call = spy.log.main_loss(loss) or (spy.log.losses[0] if spy.log.losses else None)
    outputs = call.input if call is not None else forward.logits
    if not isinstance(outputs, torch.Tensor) or not outputs.requires_grad:
        return Outcome([], "not run: no differentiable output to inspect", False)
    layout = _layout(outputs, size, spy.log, call)
    if layout is None:
        return Outcome([], f"not run: no batch axis of size {size} in the outputs", False)
    rows, lookup, t = layout
    sources = [(name, leaf) for name, leaf in leaves] + [
        (f"`{x.module or 'embedding'}` lookup", x.output)
        for x in spy.log.lookups
        if x.output.requires_grad and x.output.dim() >= 1 and x.output.shape[0] == size
    ]
    if not sources:
        return Outcome([], "not run: no float input or embedding to differentiate", False)
    # The last sample: a view used as a transpose leaves sample 0 intact more often.
    last = size - 1
    row = rows[last] if t is None else rows[last, t]
    weights = torch.randn(row.shape, generator=torch.Generator().manual_seed(seed))
    grads = torch.autograd.grad(
        (row * weights.to(row.device, row.dtype)).sum(),
        [leaf for _, leaf in sources],
        allow_unused=True,
    )
    found = _mixing(sources, grads, last, call)
    if lookup is not None and t is not None:
        index = next(i for i, (_, leaf) in enumerate(sources) if leaf is lookup.output)
        found += _future(grads[index], last, t, lookup)
    checked = (["batch mixing"] if last >= 1 else []) + (["causality"] if t is not None else [])
    if not checked:
        return Outcome([], "not run: one sample per batch, nothing to mix", False)
    what = f"sample {last}, position {t}" if t is not None else f"sample {last}"
    return Outcome(found, f"gradients of {what} checked for {' and '.join(checked)}", True)


def _leaf_batch(batch: Any, kind: BatchKind, size: int) -> tuple[list[tuple[str, torch.Tensor]], Any]:
    """The batch with its per-sample float inputs replaced by clones of fresh leaves."""
    leaves: list[tuple[str, torch.Tensor]] = []

    def leaf(tensor: torch.Tensor) -> torch.Tensor:
        if not tensor.dtype.is_floating_point or tensor.dim() == 0 or tensor.shape[0] != size:
            return tensor
        made = tensor.detach().clone().requires_grad_(True)
        leaves.append((f"input {tuple(tensor.shape)}", made))
        return made.clone()  # user code may modify its inputs in place; a leaf refuses

    if kind is BatchKind.PAIR:
        return leaves, type(batch)([tree_map(leaf, batch[0]), batch[1]])
    if kind is BatchKind.DICT:
        spied = {k: v if k in LABEL_KEYS else tree_map(leaf, v) for k, v in batch.items()}
        return leaves, spied
    return leaves, tree_map(leaf, batch)


@contextlib.contextmanager
def _frozen_statistics(model: nn.Module) -> Iterator[None]:
    """BatchNorm (mixes samples by design) and dropout (random) in eval mode, then back."""
    changed = [m for m in model.modules() if isinstance(m, _FROZEN) and m.training]
    for module in changed:
        module.training = False
    try:
        yield
    finally:
        for module in changed:
            module.training = True


def _layout(
    outputs: torch.Tensor, size: int, log: SpyLog, call: LossCall | None
) -> tuple[torch.Tensor, Lookup | None, int | None] | None:
    """Outputs as ``(samples, ...)``, plus the token lookup and position for the causal test."""
    if outputs.shape[0] == size:
        rows = outputs
    elif outputs.dim() == 2 and outputs.shape[0] % size == 0:
        rows = outputs.reshape(size, outputs.shape[0] // size, outputs.shape[1])
    else:
        return None
    if rows.dim() < 3 or call is None:
        return rows, None, None
    lookup = _next_token_lookup(rows.shape[1], size, log, call)
    if lookup is None:
        return rows, None, None
    length = rows.shape[1]
    return rows, lookup, max(0, min(length - 2, length // 3))


def _next_token_lookup(length: int, size: int, log: SpyLog, call: LossCall) -> Lookup | None:
    """The lookup whose ids, shifted by one, are the targets: a next-token model."""
    target = call.target
    if not isinstance(target, torch.Tensor) or target.numel() != size * length:
        return None
    target = target.reshape(size, length)
    for lookup in log.lookups:
        ids = lookup.ids
        if ids.dim() != 2 or ids.shape[0] != size or ids.shape[1] not in (length, length + 1):
            continue
        # Position k predicts ids[k + 1]: targets (N, T) vs ids (N, T), or the shifted (N, T-1).
        predicted = target[:, :-1] if ids.shape[1] == length else target
        following = ids[:, 1:]
        valid = predicted != (call.task.ignore_index if call.task.ignore_index is not None else -100)
        aligned = int(valid.sum())
        if aligned >= MIN_ALIGNED and float((predicted == following)[valid].float().mean()) >= NEXT_TOKEN_SHARE:
            return lookup
    return None


def _norm(tensor: torch.Tensor) -> float:
    return float(tensor.detach().double().norm()) if tensor.numel() else 0.0


def _mixing(
    sources: list[tuple[str, torch.Tensor]],
    grads: tuple[torch.Tensor | None, ...],
    sample: int,
    call: LossCall | None,
) -> list[Finding]:
    if sample < 1 or _contrastive(call, sample + 1):
        return []
    own = other = 0.0
    worst = ""
    for (name, _), grad in zip(sources, grads):
        if grad is None:
            continue
        mine = _norm(grad[sample])
        theirs = math.hypot(_norm(grad[:sample]), _norm(grad[sample + 1 :]))
        own, other = math.hypot(own, mine), math.hypot(other, theirs)
        if theirs > 0 and not worst:
            worst = name
    if other == 0 or other <= LEAK * own:
        return []
    share = other / (own + other)
    return [
        finding(
            "P821",
            f"sample {sample}'s output depends on the inputs of other samples in the batch ({share:.0%} "
            f"of its input gradient, through {worst}), with BatchNorm and dropout in eval mode: "
            "samples are mixed, so the model learns from the wrong inputs",
            "Look for `view`/`reshape` used where a `transpose`/`permute` was meant (e.g. "
            "(N, T, D) -> (T, N, D) for a sequence-first RNN), batch_first mismatches, and "
            "reductions over dim 0.",
            subject="model",
            details={"other_share": share, "through": worst, "sample": sample},
        )
    ]


def _contrastive(call: LossCall | None, size: int) -> bool:
    """CLIP-style logits (N, N) against arange(N) compare samples on purpose."""
    if call is None or not isinstance(call.target, torch.Tensor):
        return False
    target = call.target
    return (
        tuple(call.input.shape[:2]) == (size, size)
        and target.shape == (size,)
        and bool((target == torch.arange(size, device=target.device)).all())
    )


def _future(grad: torch.Tensor | None, sample: int, t: int, lookup: Lookup) -> list[Finding]:
    if grad is None:
        return []
    past, future = _norm(grad[sample, : t + 1]), _norm(grad[sample, t + 1 :])
    if future == 0 or future <= LEAK * past:
        return []
    share = future / (past + future)
    return [
        finding(
            "P822",
            f"the output at position {t} depends on the tokens after it ({share:.0%} of its "
            f"gradient through `{lookup.module or 'embedding'}` comes from positions > {t}) "
            "while the targets are the next tokens: the model sees the answer it must "
            "predict (no causal mask), so training is trivial and generation fails",
            "Mask future positions in self-attention: `scaled_dot_product_attention(..., "
            "is_causal=True)`, or a `torch.triu(..., diagonal=1)` mask of -inf; use a "
            "unidirectional RNN for next-token prediction.",
            subject=lookup.module or "model",
            details={"position": t, "future_share": share},
        )
    ]
