"""Bounded-memory reductions: sliced results must equal the whole-tensor ones."""

from __future__ import annotations

import math

import pytest
import torch

from trainlint.probe import outputs, stats
from trainlint.probe.task import infer_task


@pytest.fixture
def tiny_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force slicing on test-sized tensors."""
    monkeypatch.setattr(stats, "SLICE_ELEMENTS", 7)


@pytest.mark.parametrize("keep", [None, 0, 1, -1])
def test_slices_cover_every_element_once_and_keep_the_axis_whole(
    tiny_slices: None, keep: int | None
) -> None:
    values = torch.arange(5 * 4 * 3).reshape(5, 4, 3)
    parts = list(stats.slices(values, keep=keep))
    assert len(parts) > 1
    assert sorted(torch.cat([p.flatten() for p in parts]).tolist()) == values.flatten().tolist()
    if keep is not None:
        assert all(p.shape[keep] == values.shape[keep] for p in parts)


def test_moments_match_torch_and_skip_non_finite(tiny_slices: None) -> None:
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(9, 11, generator=gen) * 3 + 1e4  # large mean: no cancellation
    values[2, 3] = float("nan")
    values[4, 5] = float("inf")
    finite = values[torch.isfinite(values)].double()
    moments = stats.finite_moments(values)
    assert moments is not None and moments.count == finite.numel()
    assert math.isclose(moments.mean, float(finite.mean()), rel_tol=1e-12)
    assert math.isclose(moments.std, float(finite.std()), rel_tol=1e-9)
    assert moments.absmax == float(finite.abs().max())
    assert stats.finite_moments(torch.tensor([1.0, float("nan")])) is None


def test_finiteness_nan_count_and_range(tiny_slices: None) -> None:
    values = torch.zeros(6, 5)
    assert stats.all_finite(values) and not stats.any_outside(values, 0.0, 1.0)
    values[5, 4] = float("nan")
    values[0, 0] = -1.0
    assert not stats.all_finite(values)
    assert stats.count_nan(values) == 1
    assert stats.any_outside(values, 0.0, 1.0)


def test_sliced_softmax_rows_are_still_recognised(tiny_slices: None) -> None:
    """Row sums along the class axis must not be split across slices."""
    probs = torch.softmax(torch.randn(8, 5, 3), dim=1).detach()  # (N, C, L), class axis 1
    targets = torch.randint(0, 5, (8, 3))
    found = outputs.check_outputs(probs, targets, infer_task(torch.nn.CrossEntropyLoss()))
    assert [f.code for f in found] == ["P201"]
    logits = torch.randn(8, 5, 3)
    assert outputs.check_outputs(logits, targets, infer_task(torch.nn.CrossEntropyLoss())) == []
