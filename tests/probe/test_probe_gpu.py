"""CUDA-only behaviour; skipped cleanly where ``torch.cuda.is_available()`` is False."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_unchanged, capture
from probe_models.healthy import SmallCNN, cnn_batchnorm
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


def test_no_second_weight_copy_on_the_gpu() -> None:
    model = SmallCNN().cuda()
    loader = [
        (torch.randn(16, 3, 12, 12, device="cuda"), torch.randint(0, 10, (16,), device="cuda"))
        for _ in range(3)
    ]
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated()
    probe(model, loader, nn.CrossEntropyLoss(), checks=["gradient_flow"], max_steps=5)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    # Adam moments (2x) plus grads (1x) plus activations; a snapshot copy would add another 1x.
    assert torch.cuda.max_memory_allocated() - baseline < 4 * weights + 64 * 2**20
    assert torch.cuda.memory_allocated() == baseline
