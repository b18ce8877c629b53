"""The probe leaves no trace: weights, buffers, flags, grads, optimizer state and RNGs."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch
from conftest import ProbeRun, assert_unchanged, capture, run_probe
from probe_models import BUGGY, HEALTHY, Pipeline
from probe_models.common import batches_of, classification_data, loader_of, mlp
from probe_models.healthy import cnn_batchnorm, frozen_backbone, mlp_adam
from torch import nn

from trainlint.probe import probe


@pytest.mark.parametrize("name", sorted({**HEALTHY, **BUGGY}))
def test_state_is_restored_bit_exactly(name: str, probed: Callable[[str], ProbeRun]) -> None:
    run = probed(name)
    assert_unchanged(run.before, run.after)


def _user_steps(pipeline: Pipeline, steps: int = 2) -> None:
    """Train like a user would, so the optimizer holds real state (moments, momentum)."""
    assert pipeline.optimizer is not None
    for inputs, targets in list(pipeline.loader)[:steps]:
        pipeline.optimizer.zero_grad()
        pipeline.loss_fn(pipeline.model(inputs), targets).backward()
        pipeline.optimizer.step()


@pytest.mark.parametrize("factory", [mlp_adam, cnn_batchnorm, frozen_backbone])
def test_trained_optimizer_and_batchnorm_stats_are_untouched(
    factory: Callable[[], Pipeline],
) -> None:
    pipeline = factory()
    _user_steps(pipeline)
    assert pipeline.optimizer is not None and pipeline.optimizer.state
    run = run_probe(pipeline, max_steps=30)
    assert_unchanged(run.before, run.after)


def test_eval_mode_flags_and_frozen_submodule_flags_come_back() -> None:
    pipeline = cnn_batchnorm()
    pipeline.model.eval()
    pipeline.model.features[1].train()  # a deliberately mixed configuration
    run = run_probe(pipeline, max_steps=20)
    assert run.before.training["features.1"] is True and run.before.training[""] is False
    assert_unchanged(run.before, run.after)


def test_rng_streams_continue_as_if_the_probe_never_ran() -> None:
    pipeline = mlp_adam()  # its DataLoader shuffles with the global torch RNG
    torch.manual_seed(7)
    random.seed(7)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(7)
    random.seed(7)
    run_probe(pipeline, max_steps=10)
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_probe_is_deterministic_for_a_seed() -> None:
    first = run_probe(mlp_adam(), max_steps=25).report
    second = run_probe(mlp_adam(), max_steps=25).report
    assert first.loss_curve == second.loss_curve
    assert first.to_dict() == second.to_dict()


class RaisesLater(nn.Module):
    """Works for a few calls (so the probe has trained), then raises like a flaky forward."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 5))
        self.calls = 0
        self.after = after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.after:
            raise ValueError("user forward failed")
        return self.net(x)


@pytest.mark.parametrize("after", [0, 12])
def test_state_restored_when_user_forward_raises(after: int) -> None:
    torch.manual_seed(0)
    x, y = classification_data()
    model = RaisesLater(after)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    run = run_probe(
        Pipeline(model, batches_of(x, y), nn.CrossEntropyLoss(), optimizer), max_steps=40
    )
    assert_unchanged(run.before, run.after)
    errors = [f for f in run.report.findings if f.code.endswith("99") or f.code == "P299"]
    assert errors and all("user forward failed" in f.message for f in errors)
    assert not run.report.ok


def test_state_restored_with_empty_loader() -> None:
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters())
    run = run_probe(
        Pipeline(model, loader_of(*classification_data(n=0)), nn.CrossEntropyLoss(), optimizer)
    )
    assert [f.code for f in run.report.findings] == ["P191"]
    assert_unchanged(run.before, run.after)


def test_state_restored_after_out_of_memory() -> None:
    """A CUDA OOM inside user code stops the probe, becomes a finding, and restores state."""

    class OutOfMemory(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(20, 5)
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return self.fc(x)

    model = OutOfMemory()
    run = run_probe(Pipeline(model, batches_of(*classification_data()), nn.CrossEntropyLoss()))
    assert_unchanged(run.before, run.after)
    (oom,) = [f for f in run.report.findings if "out of memory" in f.message]
    assert oom.severity.value == "error"
    assert all(
        c.status.value == "skipped"
        for c in run.report.checks
        if c.name in ("overfit_batch", "amp_overflow")
    )


def test_state_restored_when_a_loader_raises() -> None:
    def broken_loader():  # noqa: ANN202 - a generator standing in for a DataLoader
        yield classification_data(n=16)
        raise OSError("corrupt shard")

    model = mlp()
    before = capture(model, None)
    report = probe(model, broken_loader(), nn.CrossEntropyLoss())
    assert_unchanged(before, capture(model, None))
    (found,) = report.by_code("P190")
    assert "corrupt shard" in found.message and "test_probe_state.py" in found.details["location"]


def test_parameters_keep_identity_and_storage() -> None:
    pipeline = mlp_adam()
    params = [(p, p.data_ptr()) for p in pipeline.model.parameters()]
    run_probe(pipeline, max_steps=10)
    assert [(p, p.data_ptr()) for p in pipeline.model.parameters()] == params
