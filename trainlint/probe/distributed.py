"""The ``distributed`` check: under torchrun / DDP, do the ranks train one model together?

Every rank runs ``probe()``; this stage is the only one that talks to the other ranks, and
it runs first, with the same collectives in the same order on every rank (the later stages
train the unwrapped module locally, so ranks may stop at different steps without hanging):

* parameters identical at the start (a rank-dependent seed before building the model);
* different samples on every rank (no DistributedSampler);
* the same number of batches on every rank (uneven shards hang at the end of an epoch);
* ``set_epoch`` changes the order between epochs (a custom sampler that ignores it);
* gradients synchronised after one backward through the wrapper (not when the step calls
  ``model.module`` and so bypasses DDP's hooks, nor when the model is not wrapped).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from trainlint.diagnostics import Finding
from trainlint.probe.batches import tensors
from trainlint.probe.codes import finding

SAME = 1e-6  # relative difference below which two ranks' sums are the same tensor
ORDER_SAMPLE = 64


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def unwrap(model: nn.Module) -> nn.Module:
    """The module DDP (or DataParallel) wraps; the model itself otherwise."""
    wrapped = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrapped) else model


@dataclass
class Outcome:
    findings: list[Finding]
    summary: str


def check(
    wrapper: nn.Module,
    loader: Iterable[Any],
    batch: Any | None,
    step: Callable[[nn.Module, Any], torch.Tensor] | None,
) -> Outcome:
    """``step(model, batch) -> loss`` runs the user's step on ``model`` (the wrapper here).

    Ranks without a batch or a way to step (an empty shard, an unknown batch structure)
    still take part in every collective; the gradient test then runs on no rank.
    """
    local = unwrap(wrapper)
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = {
        "params": _sums(p for _, p in local.named_parameters()),
        "names": [name for name, _ in local.named_parameters()],
        "batch": _fingerprint(batch) if batch is not None else None,
        "length": len(loader) if hasattr(loader, "__len__") else None,  # type: ignore[arg-type]
        "ready": batch is not None and step is not None,
    }
    ranks = _gather(mine, world)
    found = [*_parameters(ranks), *_samples(ranks), *_lengths(ranks), *_epochs(loader)]
    if not all(r["ready"] for r in ranks) or batch is None or step is None:
        return Outcome(found, f"rank {rank} of {world}: gradients not compared (a rank has no batch)")
    wrapped = isinstance(wrapper, nn.parallel.DistributedDataParallel)
    step(wrapper, batch).backward()
    grads = _gather(_sums(p.grad for p in local.parameters() if p.grad is not None), world)
    if any(not _close(grads[0], other) for other in grads[1:]):
        found.append(_unsynchronised(wrapped))
    return Outcome(found, f"rank {rank} of {world}: parameters, samples, batches and gradients compared")


def _gather(value: Any, world: int) -> list[Any]:
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, value)
    return gathered


def _sums(values: Iterable[torch.Tensor | None]) -> list[tuple[float, float]]:
    """Sum and sum of squares of each tensor, in float64: equal tensors give equal pairs."""
    result = []
    for tensor in values:
        if tensor is None:
            continue
        flat = tensor.detach().double()
        result.append((float(flat.sum()), float(flat.square().sum())))
    return result


def _close(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    return len(a) == len(b) and all(
        abs(x - y) <= SAME * max(1.0, abs(x), abs(y)) for pa, pb in zip(a, b) for x, y in zip(pa, pb)
    )


def _fingerprint(batch: Any) -> str:
    digest = hashlib.sha1()
    for _, tensor in tensors(batch, ""):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _parameters(ranks: list[dict[str, Any]]) -> list[Finding]:
    first = ranks[0]
    differing = {
        name
        for other in ranks[1:]
        for name, a, b in zip(first["names"], first["params"], other["params"])
        if not _close([a], [b])
    }
    if not differing:
        return []
    names = [n for n in first["names"] if n in differing]
    return [
        finding(
            "P901",
            f"{len(names)} parameter tensor(s) differ across ranks at the start (first: "
            f"`{names[0]}`): each rank trains a different model; DDP only broadcasts rank 0's "
            "weights when it wraps the model, so this comes from changing them afterwards or "
            "from probing an unwrapped model",
            "Seed identically before building the model on every rank (not with the rank in "
            "the seed), wrap it in DDP before any update, and load checkpoints on every rank.",
            subject="model",
            details={"parameters": names[:10]},
        )
    ]


def _samples(ranks: list[dict[str, Any]]) -> list[Finding]:
    prints = [r["batch"] for r in ranks if r["batch"] is not None]
    if len(set(prints)) == len(prints):
        return []
    return [
        finding(
            "P902",
            "several ranks got the very same first batch: every rank trains on the same "
            "samples, so N GPUs do the work of one",
            "Use `DataLoader(dataset, sampler=DistributedSampler(dataset), ...)` (and no "
            "shuffle=True on the DataLoader itself).",
            subject="loader",
        )
    ]


def _lengths(ranks: list[dict[str, Any]]) -> list[Finding]:
    lengths = [r["length"] for r in ranks]
    if None in lengths or len(set(lengths)) == 1:
        return []
    return [
        finding(
            "P903",
            f"ranks get different numbers of batches per epoch ({lengths}): the rank with more "
            "batches waits forever in its next all-reduce at the end of the epoch",
            "Shard with DistributedSampler (it pads or drops to equal lengths), use "
            "drop_last=True, or wrap the loop in `model.join()`.",
            subject="loader",
            details={"lengths": lengths},
        )
    ]


def _epochs(loader: Any) -> list[Finding]:
    """A shuffling sampler must give another order after ``set_epoch(epoch + 1)``."""
    sampler = getattr(loader, "sampler", None)
    set_epoch = getattr(sampler, "set_epoch", None)
    if sampler is None or not callable(set_epoch) or not getattr(sampler, "shuffle", False):
        return []
    epoch = getattr(sampler, "epoch", 0)
    try:
        first = list(itertools.islice(iter(sampler), ORDER_SAMPLE))
        set_epoch(epoch + 1)
        second = list(itertools.islice(iter(sampler), ORDER_SAMPLE))
    finally:
        set_epoch(epoch)
    if first != second or len(first) < 2:
        return []
    return [
        finding(
            "P904",
            f"{type(sampler).__name__}.set_epoch() does not change the sample order: every "
            "epoch sees the data in the same order",
            "Derive the shuffling seed from the epoch (as DistributedSampler does), and call "
            "`sampler.set_epoch(epoch)` at the start of every epoch.",
            subject="sampler",
        )
    ]


def _unsynchronised(wrapped: bool) -> Finding:
    cause = (
        "the step bypasses the DDP wrapper (a forward through `model.module`, or inside "
        "`no_sync()`), so DDP's gradient hooks never fire"
        if wrapped
        else "the model is not wrapped in DistributedDataParallel"
    )
    return finding(
        "P905",
        f"gradients differ across ranks after backward: {cause}; the replicas drift apart",
        "Call the DDP-wrapped model in the training step (not `.module`), and leave "
        "`no_sync()` for gradient accumulation only.",
        subject="model",
    )
