"""Inferring the learning task from the loss function (and, for dict batches, the outputs).

The task decides what "expected initial loss", "valid target" and "probabilities instead of
logits" mean. When the loss is not recognised the task is ``UNKNOWN`` and every task-aware
check stays silent: a missed hint costs less than a false alarm on a healthy pipeline.
"""

from __future__ import annotations

import enum
import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn


class Kind(str, enum.Enum):
    MULTICLASS = "multiclass"  # cross-entropy on logits
    LOG_PROBS = "log_probs"  # NLL on log-probabilities
    BINARY_LOGITS = "binary_logits"  # BCE with logits (binary or multi-label)
    BINARY_PROBS = "binary_probs"  # BCE on probabilities
    REGRESSION = "regression"  # MSE
    REGRESSION_L1 = "regression_l1"  # L1 / mean absolute error
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Task:
    kind: Kind
    loss_name: str
    ignore_index: int | None = None
    label_smoothing: float = 0.0
    # Cross-entropy takes classes on dim 1; HF models put them last (``(N, T, vocab)``).
    class_dim: int = 1

    @property
    def classification(self) -> bool:
        return self.kind in (Kind.MULTICLASS, Kind.LOG_PROBS)

    @property
    def binary(self) -> bool:
        return self.kind in (Kind.BINARY_LOGITS, Kind.BINARY_PROBS)

    @property
    def regression(self) -> bool:
        return self.kind in (Kind.REGRESSION, Kind.REGRESSION_L1)


UNKNOWN = Task(Kind.UNKNOWN, "unknown")

# Loss modules and functionals share a family; the module carries ignore_index/smoothing.
_MODULES: tuple[tuple[type[nn.Module], Kind], ...] = (
    (nn.CrossEntropyLoss, Kind.MULTICLASS),
    (nn.NLLLoss, Kind.LOG_PROBS),
    (nn.BCEWithLogitsLoss, Kind.BINARY_LOGITS),
    (nn.BCELoss, Kind.BINARY_PROBS),
    (nn.MSELoss, Kind.REGRESSION),
    (nn.L1Loss, Kind.REGRESSION_L1),
)
_FUNCTIONS: dict[Callable[..., Any], Kind] = {
    F.cross_entropy: Kind.MULTICLASS,
    F.nll_loss: Kind.LOG_PROBS,
    F.binary_cross_entropy_with_logits: Kind.BINARY_LOGITS,
    F.binary_cross_entropy: Kind.BINARY_PROBS,
    F.mse_loss: Kind.REGRESSION,
    F.l1_loss: Kind.REGRESSION_L1,
}
_FUNCTION_NAMES: dict[str, Kind] = {fn.__name__: kind for fn, kind in _FUNCTIONS.items()}


def _from_module(loss: nn.Module) -> Task | None:
    for cls, kind in _MODULES:
        if isinstance(loss, cls):
            ignore = getattr(loss, "ignore_index", None)
            smoothing = float(getattr(loss, "label_smoothing", 0.0))
            return Task(kind, type(loss).__name__, ignore, smoothing)
    return None


def _from_function(fn: Callable[..., Any]) -> Task | None:
    kind = _FUNCTIONS.get(fn)
    if kind is None:
        return None
    ignore = -100 if kind in (Kind.MULTICLASS, Kind.LOG_PROBS) else None
    return Task(kind, f"F.{fn.__name__}", ignore)


def _referenced_tasks(fn: Callable[..., Any]) -> set[Task]:
    """Tasks of the loss objects a plain Python loss function refers to.

    ``lambda out, y: F.cross_entropy(out, y)`` or a closure over ``nn.MSELoss()`` are common;
    the names the code object uses are resolved in its globals and closure cells.
    """
    code = getattr(fn, "__code__", None)
    if code is None:
        return set()
    try:
        closure = inspect.getclosurevars(fn)
    except (TypeError, ValueError):
        return set()
    values = [*closure.nonlocals.values(), *closure.globals.values()]
    tasks = {task for value in values if (task := _direct(value)) is not None}
    # ``F.cross_entropy`` resolves ``F`` as a global and leaves ``cross_entropy`` unbound.
    tasks |= {
        Task(kind, f"F.{name}", -100 if kind in (Kind.MULTICLASS, Kind.LOG_PROBS) else None)
        for name in closure.unbound
        if (kind := _FUNCTION_NAMES.get(name)) is not None
    }
    return tasks


def _direct(loss: Any) -> Task | None:
    if isinstance(loss, nn.Module):
        return _from_module(loss)
    if callable(loss):
        try:
            return _from_function(loss)
        except TypeError:  # unhashable callables cannot be dictionary keys
            return None
    return None


def infer_task(loss_fn: Any) -> Task:
    """The task of ``loss_fn``; ``UNKNOWN`` unless exactly one known loss family is used."""
    if loss_fn is None:
        return UNKNOWN
    while isinstance(loss_fn, functools.partial):
        loss_fn = loss_fn.func
    direct = _direct(loss_fn)
    if direct is not None:
        return direct
    referenced = _referenced_tasks(loss_fn)
    kinds = {task.kind for task in referenced}
    if len(kinds) == 1:
        # Several objects of one family (say two CrossEntropyLoss) still name one task,
        # but their ignore_index may differ: keep the first, sorted for determinism.
        return sorted(referenced, key=lambda t: t.loss_name)[0]
    return UNKNOWN


def infer_dict_task(logits: torch.Tensor | None, labels: Any) -> Task:
    """The task of a Hugging Face style model that computes its own loss.

    Integer labels whose shape matches the logits without their last dimension mean
    cross-entropy with HF's ``-100`` ignore index; float labels of the logits' shape in
    ``[0, 1]`` mean multi-label BCE. Anything else stays unknown.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        return UNKNOWN
    if not labels.dtype.is_floating_point and labels.shape == logits.shape[:-1]:
        return Task(
            Kind.MULTICLASS, "model loss (cross-entropy)", ignore_index=-100, class_dim=-1
        )
    if labels.dtype.is_floating_point and labels.shape == logits.shape:
        finite = labels[torch.isfinite(labels)]
        if finite.numel() and bool(((finite == 0) | (finite == 1)).all()):
            return Task(Kind.BINARY_LOGITS, "model loss (BCE with logits)")
    return UNKNOWN
