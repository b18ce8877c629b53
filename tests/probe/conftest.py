"""Shared helpers for the probe tests: fixture pipelines, cached probe runs, state capture."""

from __future__ import annotations

import copy
import random
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))

from probe_models import BUGGY, HEALTHY, Pipeline  # noqa: E402

from trainlint.probe import ProbeReport, probe  # noqa: E402

MAX_STEPS = 120  # enough for every healthy fixture to overfit, small enough for CPU CI

# The fixtures are tiny: one intra-op thread is as fast, and it avoids OpenMP spin-waiting
# that makes the suite 5-10x slower when another process competes for the cores.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.gpu`` tests skip cleanly on machines without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _numpy_state() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy.random.get_state()


@dataclass
class Captured:
    """Everything the probe promises to leave untouched, copied for later comparison."""

    tensors: dict[str, torch.Tensor]
    storage: dict[str, tuple[int, int]]
    training: dict[str, bool]
    hooks: dict[str, tuple[int, ...]]
    requires_grad: dict[str, bool]
    grads: dict[str, torch.Tensor | None]
    grad_ids: dict[str, int | None]
    optimizer: dict[str, Any] | None
    torch_rng: torch.Tensor
    python_rng: object
    numpy_rng: object


def capture(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> Captured:
    state = model.state_dict(keep_vars=True)
    params = dict(model.named_parameters())
    return Captured(
        tensors={k: v.detach().clone() for k, v in state.items()},
        storage={k: (id(v), v.data_ptr()) for k, v in state.items()},
        training={n: m.training for n, m in model.named_modules()},
        hooks={
            n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for n, m in model.named_modules()
        },
        requires_grad={n: p.requires_grad for n, p in params.items()},
        grads={n: None if p.grad is None else p.grad.detach().clone() for n, p in params.items()},
        grad_ids={n: None if p.grad is None else id(p.grad) for n, p in params.items()},
        optimizer=copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None,
        torch_rng=torch.get_rng_state(),
        python_rng=random.getstate(),
        numpy_rng=_numpy_state(),
    )


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.device == b.device
            and torch.equal(a, b)
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    same = a == b
    # numpy arrays (the numpy RNG key) compare elementwise.
    return bool(same.all()) if hasattr(same, "all") else bool(same)


def assert_unchanged(before: Captured, after: Captured) -> None:
    for name, tensor in before.tensors.items():
        assert _equal(tensor, after.tensors[name]), f"{name} changed"
    assert before.storage == after.storage, "parameters/buffers were replaced or moved"
    assert before.training == after.training
    assert before.hooks == after.hooks, "probe hooks were left on the model"
    assert before.requires_grad == after.requires_grad
    assert _equal(before.grads, after.grads), ".grad values changed"
    assert before.grad_ids == after.grad_ids, ".grad tensors were replaced"
    assert _equal(before.optimizer, after.optimizer), "optimizer state changed"
    assert torch.equal(before.torch_rng, after.torch_rng), "torch RNG state changed"
    assert before.python_rng == after.python_rng, "python RNG state changed"
    if before.numpy_rng is not None:
        assert _equal(list(before.numpy_rng), list(after.numpy_rng)), "numpy RNG state changed"


def prime_grads(model: torch.nn.Module) -> None:
    """Leave stale gradients on every other parameter, as a user mid-training would."""
    gen = torch.Generator().manual_seed(123)
    for index, param in enumerate(model.parameters()):
        if index % 2 == 0 and param.requires_grad:
            param.grad = torch.randn(param.shape, generator=gen).to(param.dtype)


@dataclass
class ProbeRun:
    pipeline: Pipeline
    report: ProbeReport
    before: Captured
    after: Captured


def run_probe(pipeline: Pipeline, **overrides: Any) -> ProbeRun:
    prime_grads(pipeline.model)
    before = capture(pipeline.model, pipeline.optimizer)
    args, kwargs = pipeline.probe_args()
    kwargs.setdefault("max_steps", MAX_STEPS)
    kwargs.update(overrides)
    report = probe(*args, **kwargs)
    return ProbeRun(pipeline, report, before, capture(pipeline.model, pipeline.optimizer))


@pytest.fixture(scope="session")
def probed() -> Callable[[str], ProbeRun]:
    """``probed(name)``: the probe run of a fixture pipeline, computed once per session."""
    cache: dict[str, ProbeRun] = {}
    factories = {**HEALTHY, **BUGGY}

    def get(name: str) -> ProbeRun:
        if name not in cache:
            with warnings.catch_warnings():
                # mse_broadcast triggers torch's own broadcasting warning on purpose.
                warnings.filterwarnings("ignore", message="Using a target size")
                cache[name] = run_probe(factories[name]())
        return cache[name]

    return get
