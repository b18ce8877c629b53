"""Inferring the learning task from the loss function (and, for dict batches, the outputs).

The task decides what "expected initial loss", "valid target" and "probabilities instead of
logits" mean. When the loss is not recognised the task is ``UNKNOWN`` and every task-aware
check stays silent: a missed hint costs less than a false alarm on a healthy pipeline.

A loss recognised only *inside* a user function (``lambda o, y: F.cross_entropy(...)``) is
``direct=False``: that function may reshape, remap or re-weight before the real loss, so
checks that assume the loss sees the model outputs as they are stay quiet for it.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

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
    # Cross-entropy takes classes on dim 1; HF models put them last (``(N, T, vocab)``).
    class_dim: int = 1
    reduction: str = "mean"
    label_smoothing: float = 0.0
    direct: bool = True
    # BCEWithLogitsLoss(pos_weight=...) raises the loss at zero logits above log 2.
    pos_weight: torch.Tensor | None = field(default=None, compare=False)

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
HF_IGNORE_INDEX = -100

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


def _default_ignore(kind: Kind) -> int | None:
    return HF_IGNORE_INDEX if kind in (Kind.MULTICLASS, Kind.LOG_PROBS) else None


def _from_module(loss: nn.Module) -> Task | None:
    for cls, kind in _MODULES:
        if isinstance(loss, cls):
            return Task(
                kind,
                type(loss).__name__,
                ignore_index=getattr(loss, "ignore_index", None),
                reduction=str(getattr(loss, "reduction", "mean")),
                label_smoothing=float(getattr(loss, "label_smoothing", 0.0)),
                pos_weight=getattr(loss, "pos_weight", None),
            )
    return None


def _from_function(fn: Callable[..., Any], keywords: dict[str, Any]) -> Task | None:
    try:
        kind = _FUNCTIONS.get(fn)
    except TypeError:  # unhashable callables cannot be dictionary keys
        return None
    if kind is None:
        return None
    return Task(
        kind,
        f"F.{fn.__name__}",
        ignore_index=keywords.get("ignore_index", _default_ignore(kind)),
        reduction=str(keywords.get("reduction", "mean")),
        label_smoothing=float(keywords.get("label_smoothing", 0.0)),
        pos_weight=keywords.get("pos_weight"),
    )


def _direct(loss: Any) -> Task | None:
    keywords: dict[str, Any] = {}
    while isinstance(loss, functools.partial):
        keywords = {**loss.keywords, **keywords}
        loss = loss.func
    if isinstance(loss, nn.Module):
        return _from_module(loss)
    if callable(loss):
        return _from_function(loss, keywords)
    return None


def _referenced_tasks(fn: Callable[..., Any]) -> set[Task]:
    """Tasks of the loss objects a plain Python loss function refers to.

    ``lambda out, y: F.cross_entropy(out, y)`` or a closure over ``nn.MSELoss()`` are common;
    the names the code object uses are resolved in its globals and closure cells.
    """
    if getattr(fn, "__code__", None) is None:
        return set()
    try:
        closure = inspect.getclosurevars(fn)
    except (TypeError, ValueError):
        return set()
    values = [*closure.nonlocals.values(), *closure.globals.values()]
    tasks = {task for value in values if (task := _direct(value)) is not None}
    # ``F.cross_entropy`` resolves ``F`` as a global and leaves ``cross_entropy`` unbound.
    tasks |= {
        Task(kind, f"F.{name}", ignore_index=_default_ignore(kind))
        for name in closure.unbound
        if (kind := _FUNCTION_NAMES.get(name)) is not None
    }
    return tasks


def infer_task(loss_fn: Any) -> Task:
    """The task of ``loss_fn``; ``UNKNOWN`` unless exactly one known loss family is used."""
    if loss_fn is None:
        return UNKNOWN
    direct = _direct(loss_fn)
    if direct is not None:
        return direct
    referenced = _referenced_tasks(loss_fn)
    if len({task.kind for task in referenced}) != 1:
        return UNKNOWN
    # Several objects of one family still name one task; sorted for determinism.
    first = sorted(referenced, key=lambda t: (t.loss_name, str(t.ignore_index)))[0]
    return replace(
        first,
        loss_name=f"{first.loss_name} (inside {_name(loss_fn)})",
        direct=False,
        pos_weight=None,
    )


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", type(fn).__name__)


def infer_dict_task(logits: torch.Tensor | None, labels: Any) -> Task:
    """The task of a Hugging Face style model that computes its own loss.

    Integer labels whose shape matches the logits without their last dimension mean
    cross-entropy with HF's ``-100`` ignore index; float 0/1 labels of the logits' shape
    mean multi-label BCE. Anything else stays unknown.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        return UNKNOWN
    if not labels.dtype.is_floating_point and labels.shape == logits.shape[:-1]:
        return Task(
            Kind.MULTICLASS,
            "model loss (cross-entropy)",
            ignore_index=HF_IGNORE_INDEX,
            class_dim=-1,
        )
    if labels.dtype.is_floating_point and labels.shape == logits.shape:
        finite = labels[torch.isfinite(labels)]
        if finite.numel() and bool(((finite == 0) | (finite == 1)).all()):
            return Task(Kind.BINARY_LOGITS, "model loss (BCE with logits)")
    return UNKNOWN


def class_axis(task: Task, logits: torch.Tensor | None, targets: Any) -> int | None:
    """The class dimension of ``logits`` given the targets' shape, or None if they disagree.

    Class-index targets have the logits' shape without the class dimension: dim 1 for
    ``cross_entropy``, the last one for HF models and for wrappers that flatten
    ``(N, T, V)`` to ``(N*T, V)``. Probability targets have the logits' own shape.
    """
    if logits is None or logits.dim() < 2 or not isinstance(targets, torch.Tensor):
        return None
    if targets.shape == logits.shape:
        return task.class_dim
    for dim in dict.fromkeys((task.class_dim % logits.dim(), logits.dim() - 1)):
        without = logits.shape[:dim] + logits.shape[dim + 1 :]
        if targets.shape == without:
            return dim
    if targets.numel() * logits.shape[-1] == logits.numel():
        return logits.dim() - 1
    return None
