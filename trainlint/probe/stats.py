"""Reductions over large tensors in bounded memory.

A language model's logits are tokens × vocabulary: 0.4 GB for GPT-2 small at batch 8 and
context 256. The output checks run while the forward graph is still alive, so a float64
copy of the logits (or a boolean mask plus a masked copy) would push the probe's peak memory
well above a plain training step's. Every reduction here walks the tensor in slices of at
most ``SLICE_ELEMENTS`` elements instead, keeping the extra memory at a few dozen MB.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

SLICE_ELEMENTS = 1 << 22


def slices(values: torch.Tensor, keep: int | None = None) -> Iterator[torch.Tensor]:
    """Views of ``values`` that cover it once; dimension ``keep`` is never cut.

    Row-wise reductions along ``keep`` (a softmax's class axis) give the same rows on each
    slice as on the whole tensor.
    """
    if values.numel() <= SLICE_ELEMENTS or values.dim() == 0:
        yield values
        return
    kept = keep % values.dim() if keep is not None else None
    cut = next((d for d in range(values.dim()) if d != kept and values.shape[d] > 1), None)
    if cut is None:
        yield values
        return
    step = max(1, values.shape[cut] * SLICE_ELEMENTS // values.numel())
    for start in range(0, values.shape[cut], step):
        yield values.narrow(cut, start, min(step, values.shape[cut] - start))


def all_finite(values: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(part).all()) for part in slices(values))


def count_nan(values: torch.Tensor) -> int:
    return sum(int(torch.isnan(part).sum()) for part in slices(values))


def any_outside(values: torch.Tensor, low: float, high: float) -> bool:
    return any(bool(((part < low) | (part > high)).any()) for part in slices(values))


@dataclass(frozen=True)
class Moments:
    """Mean, standard deviation and largest magnitude of the finite values."""

    count: int
    mean: float
    std: float
    absmax: float


def finite_moments(values: torch.Tensor) -> Moments | None:
    """``None`` when fewer than two values are finite (no spread to speak of)."""
    count, mean, m2, absmax = 0, 0.0, 0.0, 0.0
    for part in slices(values):
        finite = part[torch.isfinite(part)].double()
        n = finite.numel()
        if n == 0:
            continue
        part_mean = float(finite.mean())
        part_m2 = float((finite - part_mean).square().sum())
        # Chan et al.'s pairwise merge: no cancellation when the mean dwarfs the spread.
        delta = part_mean - mean
        total = count + n
        mean += delta * n / total
        m2 += part_m2 + delta * delta * count * n / total
        count = total
        absmax = max(absmax, float(finite.abs().max()))
    if count < 2:
        return None
    return Moments(count, mean, math.sqrt(m2 / (count - 1)), absmax)
