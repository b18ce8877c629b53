"""The ``outputs`` check: what the model hands the loss, judged before the loss runs.

The runtime twin of static rules TL101 (softmax before CrossEntropyLoss), TL102 (sigmoid
before BCEWithLogitsLoss) and TL103 (NLLLoss on probabilities): the linter sees the code,
the probe sees the tensors, so it also catches activations hidden behind helpers or configs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from trainlint.diagnostics import Finding
from trainlint.probe import stats
from trainlint.probe.codes import finding
from trainlint.probe.task import Kind, Task, class_axis

# Autograd nodes that only reshape or copy: the activation that produced the output sits
# behind them (``softmax(x).view(...)`` still feeds probabilities to the loss).
_PASS_THROUGH = (
    "View",
    "Reshape",
    "UnsafeView",
    "Squeeze",
    "Unsqueeze",
    "Permute",
    "Transpose",
    "Clone",
    "Expand",
    "Slice",
    "Select",
    "AsStrided",
    "ToCopy",
    "Flatten",
)
SUM_TOLERANCE = 1e-3


def check_outputs(logits: torch.Tensor | None, targets: Any, task: Task) -> list[Finding]:
    if logits is None or not logits.dtype.is_floating_point or logits.numel() == 0:
        return []
    values = logits.detach()
    if not stats.all_finite(values):
        return [_non_finite(values)]
    if not task.direct:
        return []  # a wrapper may apply log/log_softmax itself before the real loss
    producer = producer_name(logits)
    axis = class_axis(task, values, targets)
    if task.classification and _is_distribution(values, producer, axis):
        return [_probabilities(task, producer)]
    if (
        task.kind is Kind.LOG_PROBS
        and axis is not None
        and producer != "LogSoftmax"
        and not _rows_are_log_probs(values, axis)
    ):
        return [_raw_logits_to_nll(values, axis, task)]
    if task.kind is Kind.BINARY_LOGITS:
        return _squashed_binary(values, producer, task)
    if task.regression and isinstance(targets, torch.Tensor):
        return _broadcast(values, targets, task)
    return []


def producer_name(tensor: torch.Tensor) -> str | None:
    """The autograd op that produced ``tensor`` (``Softmax``, ``Sigmoid``...), past reshapes."""
    node = tensor.grad_fn
    while node is not None:
        name = type(node).__name__.removesuffix("Backward0").removesuffix("Backward1")
        if not name.startswith(_PASS_THROUGH):
            return name
        parents = [n for n, _ in node.next_functions if n is not None]
        node = parents[0] if parents else None
    return None


def _non_finite(values: torch.Tensor) -> Finding:
    nan = stats.count_nan(values)
    return finding(
        "P204",
        f"the model outputs contain NaN/Inf at initialization ({nan} NaN of {values.numel()})",
        "Look for log/sqrt/division of possibly-zero values in forward, huge initial weights, "
        "or NaN inputs.",
        subject="outputs",
        details={"nan": nan, "numel": values.numel()},
    )


def _is_distribution(values: torch.Tensor, producer: str | None, axis: int | None) -> bool:
    """Softmax output: an explicit Softmax node, or every row in [0, 1] summing to 1."""
    if producer == "Softmax":
        return True
    if axis is None or values.shape[axis] < 2:
        return False
    if stats.any_outside(values, 0.0, 1.0):
        return False
    return all(
        bool(((part.double().sum(dim=axis) - 1).abs() <= SUM_TOLERANCE).all())
        for part in stats.slices(values, keep=axis)
    )


def _probabilities(task: Task, producer: str | None) -> Finding:
    rule = "TL103" if task.kind is Kind.LOG_PROBS else "TL101"
    expected = "log-probabilities" if task.kind is Kind.LOG_PROBS else "raw logits"
    fix = (
        "Use `log_softmax` instead of `softmax` before NLLLoss."
        if task.kind is Kind.LOG_PROBS
        else "Remove the softmax from the model's forward (CrossEntropyLoss applies "
        "log_softmax itself); apply softmax only at inference."
    )
    return finding(
        "P201",
        f"the model outputs are probabilities (every row sums to 1"
        f"{', produced by softmax' if producer == 'Softmax' else ''}) but {task.loss_name} "
        f"expects {expected}: gradients shrink and the loss plateaus. Runtime twin of "
        f"static rule {rule}.",
        fix,
        subject="outputs",
        details={"producer": producer, "loss": task.loss_name, "static_rule": rule},
    )


def _row_logsumexps(values: torch.Tensor, axis: int) -> Iterator[torch.Tensor]:
    for part in stats.slices(values, keep=axis):
        yield torch.logsumexp(part.double(), dim=axis)


def _rows_are_log_probs(values: torch.Tensor, axis: int) -> bool:
    return all(bool((lse.abs() <= SUM_TOLERANCE).all()) for lse in _row_logsumexps(values, axis))


def _raw_logits_to_nll(values: torch.Tensor, axis: int, task: Task) -> Finding:
    parts = [(float(lse.sum()), lse.numel()) for lse in _row_logsumexps(values, axis)]
    mean = sum(total for total, _ in parts) / max(1, sum(count for _, count in parts))
    return finding(
        "P203",
        f"{task.loss_name} expects log-probabilities but the outputs are not normalized "
        f"(logsumexp over classes is {mean:.3g}, not 0): the loss can be driven "
        "to -inf by growing the logits",
        "Apply `log_softmax(dim=1)` before NLLLoss, or use CrossEntropyLoss on the raw logits.",
        subject="outputs",
        details={"mean_logsumexp": mean},
    )


def _squashed_binary(values: torch.Tensor, producer: str | None, task: Task) -> list[Finding]:
    if producer in ("Sigmoid", "Softmax"):
        return [
            finding(
                "P202",
                f"the model outputs come from {producer.lower()} but {task.loss_name} applies "
                "the sigmoid itself: the loss sees sigmoid(sigmoid(x)), saturates and learns "
                "slowly. Runtime twin of static rule TL102.",
                "Remove the sigmoid from forward (keep it for inference only), or switch to "
                "BCELoss if probabilities are really wanted (less stable).",
                subject="outputs",
                details={"producer": producer, "loss": task.loss_name, "static_rule": "TL102"},
            )
        ]
    return []


def _broadcast(values: torch.Tensor, targets: torch.Tensor, task: Task) -> list[Finding]:
    if values.shape == targets.shape:
        return []
    try:
        shape = torch.broadcast_shapes(values.shape, targets.shape)
    except RuntimeError:
        return []  # the loss itself raises on incompatible shapes
    if shape == values.shape or shape == targets.shape:
        return []
    return [
        finding(
            "P206",
            f"{task.loss_name} gets outputs of shape {tuple(values.shape)} and targets of "
            f"shape {tuple(targets.shape)}, which broadcast to {tuple(shape)}: every output "
            "is compared with every target and the model learns the mean",
            "Make the shapes equal, e.g. `outputs.squeeze(-1)` or `targets.unsqueeze(-1)`.",
            subject="outputs",
            details={
                "outputs_shape": list(values.shape),
                "targets_shape": list(targets.shape),
                "broadcast_shape": list(shape),
            },
        )
    ]
