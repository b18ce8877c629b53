"""CUDA-only behaviour; skipped cleanly where ``torch.cuda.is_available()`` is False."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from conftest import assert_unchanged, capture, run_probe
from probe_models import BUGGY, HEALTHY
from probe_models.healthy import cnn_batchnorm
from torch import nn

from trainlint.probe import probe

pytestmark = pytest.mark.gpu


def test_probe_on_cuda_restores_state_and_rngs() -> None:
    pipeline = cnn_batchnorm()
    model = pipeline.model.cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loader = [(x.cuda(), y.cuda()) for x, y in pipeline.loader]
    torch.cuda.manual_seed(5)
    cuda_rng = torch.cuda.get_rng_state()
    before = capture(model, optimizer)
    report = probe(
        model, loader, nn.CrossEntropyLoss(), optimizer, amp_dtype=torch.float16, max_steps=60
    )
    assert_unchanged(before, capture(model, optimizer))
    assert torch.equal(torch.cuda.get_rng_state(), cuda_rng)
    assert report.ok and report.device.startswith("cuda")


@pytest.mark.filterwarnings("ignore:Using a target size")  # mse_broadcast, on purpose
@pytest.mark.parametrize("name", sorted(BUGGY))
def test_every_bug_is_caught_on_cuda(name: str) -> None:
    """The CPU suite's expectations hold on the GPU too (device-side asserts included)."""
    run = run_probe(BUGGY[name](), device="cuda")
    found = {(f.code, f.subject) for f in run.report.findings}
    for expected in run.pipeline.expected:
        assert any(
            code == expected.code and (expected.subject is None or subject == expected.subject)
            for code, subject in found
        ), (name, expected, found)
    assert_unchanged(run.before, run.after)


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_every_healthy_pipeline_passes_on_cuda(name: str) -> None:
    run = run_probe(HEALTHY[name](), device="cuda")
    assert run.report.ok, [(f.code, f.message) for f in run.report.at_least("warning")]
    assert run.report.device.startswith("cuda")
    assert_unchanged(run.before, run.after)


def test_device_argument_moves_a_cpu_model_and_back() -> None:
    pipeline = cnn_batchnorm()
    before = capture(pipeline.model, pipeline.optimizer)
    report = probe(
        pipeline.model,
        pipeline.loader,
        nn.CrossEntropyLoss(),
        pipeline.optimizer,
        device="cuda",
        max_steps=30,
    )
    assert report.device.startswith("cuda")
    assert all(p.device.type == "cpu" for p in pipeline.model.parameters())
    assert_unchanged(before, capture(pipeline.model, pipeline.optimizer))


def _peak_above(baseline: int, run: Callable[[], object]) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - baseline


def _plain_and_probe_peaks(model: nn.Module, loader: list[tuple[torch.Tensor, ...]]) -> tuple[int, int, int]:
    """Peak CUDA memory, above the resting state, of one plain Adam step and of a probe run;
    and the resting state itself. Also checks that the probe put the weights back."""

    def plain_step() -> None:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        nn.functional.cross_entropy(model(loader[0][0]), loader[0][1]).backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)

    snapshot = [p.detach().clone() for p in model.parameters()]
    plain_step()  # warm-up: cuBLAS workspaces and the like belong to the baseline
    with torch.no_grad():
        for param, saved in zip(model.parameters(), snapshot):
            param.copy_(saved)
    del snapshot
    baseline = torch.cuda.memory_allocated()
    plain = _peak_above(baseline, plain_step)
    with torch.no_grad():
        before = [p.detach().to("cpu", copy=True) for p in model.parameters()]
    probed = _peak_above(
        baseline, lambda: probe(model, loader, nn.CrossEntropyLoss(), max_steps=10)
    )
    assert all(torch.equal(p.cpu(), b) for p, b in zip(model.parameters(), before))
    return plain, probed, baseline


def test_no_second_weight_copy_on_the_gpu() -> None:
    """Weight-heavy, activation-light: a device snapshot would show up as +1x weights."""
    model = nn.Sequential(
        nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10)
    ).cuda()
    loader = [
        (torch.randn(16, 2048, device="cuda"), torch.randint(0, 10, (16,), device="cuda"))
        for _ in range(3)
    ]
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    plain, probed, baseline = _plain_and_probe_peaks(model, loader)
    assert probed - plain < 0.5 * weights, (probed, plain, weights)
    assert torch.cuda.memory_allocated() <= baseline


def test_large_logits_add_no_copies_to_the_peak() -> None:
    """Language-model shape: the logits dwarf the weights. The output checks run while the
    graph is alive, so float64 or masked copies of the logits would show up in the peak."""
    vocab, tokens = 32000, 2048
    model = nn.Sequential(nn.Embedding(vocab, 64), nn.Linear(64, vocab)).cuda()
    gen = torch.Generator().manual_seed(0)
    loader = [
        (torch.randint(0, vocab, (tokens,), generator=gen).cuda(),) * 2 for _ in range(3)
    ]
    logits_bytes = tokens * vocab * 4
    plain, probed, _ = _plain_and_probe_peaks(model, loader)
    assert probed - plain < 0.5 * logits_bytes, (probed, plain, logits_bytes)
