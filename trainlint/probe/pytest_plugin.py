"""pytest plugin: the ``trainlint_probe`` fixture and the ``assert_trainable`` helper.

    def test_pipeline(trainlint_probe):
        report = trainlint_probe(model, loader, nn.CrossEntropyLoss())  # fails on errors

    def test_pipeline_strict():
        assert_trainable(model, loader, nn.CrossEntropyLoss(), min_severity="warning")

Registered through the ``pytest11`` entry point; importing it does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from trainlint.probe.report import ProbeReport

DEFAULT_MAX_STEPS = 100


def assert_trainable(
    model: Any,
    loader: Iterable[Any],
    loss_fn: Any = None,
    optimizer: Any = None,
    *,
    min_severity: str = "error",
    **kwargs: Any,
) -> ProbeReport:
    """Probe the pipeline and fail (an AssertionError listing the findings) at
    ``min_severity`` or above; returns the report otherwise."""
    from trainlint.probe.api import probe

    kwargs.setdefault("max_steps", DEFAULT_MAX_STEPS)
    report = probe(model, loader, loss_fn, optimizer, **kwargs)
    report.raise_for_findings(min_severity)
    return report


@pytest.fixture
def trainlint_probe() -> Callable[..., ProbeReport]:
    """``assert_trainable`` as a fixture: ``trainlint_probe(model, loader, loss_fn, ...)``."""
    pytest.importorskip("torch")
    return assert_trainable
