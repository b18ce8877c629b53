"""The ``loss_shapes`` check: loss calls whose shapes are accepted but mean the wrong thing.

* Cross-entropy and NLL take classes on dim 1. A sequence model's ``(N, T, C)`` logits
  passed as they are run without error whenever the targets happen to fit (``T == C``,
  or one-hot targets of the logits' shape), and then normalise over time instead of classes.
  The autograd graph tells where the classes are: a ``Linear`` (or a softmax over the last
  dim) puts them last, and no transpose/permute moved them to dim 1.
* Element-wise losses broadcast an ``(N, 1)`` input against ``(N,)`` targets into
  ``(N, N)`` silently. Regression losses report it as ``P206`` (``outputs``); this check
  covers the other element-wise losses (KL divergence, Poisson NLL...).
"""

from __future__ import annotations

import torch

from trainlint.diagnostics import Finding
from trainlint.probe.codes import finding
from trainlint.probe.spy import LossCall
from trainlint.probe.task import Kind

SUM_TOLERANCE = 1e-3
# Nodes that keep every axis where it was: a dtype cast, a copy, a reshape of rows, a bias
# added or a scale applied (the first parent is the tensor followed).
_KEEPS_AXES = (
    "ToCopyBackward",
    "CloneBackward",
    "ViewBackward",
    "UnsafeViewBackward",
    "AddBackward",
    "MulBackward",
    "DivBackward",
)
_MOVES_AXES = ("TransposeBackward", "PermuteBackward", "MovedimBackward")
_LAST_AXIS_PRODUCERS = ("AddmmBackward", "MmBackward")
_SOFTMAX = ("LogSoftmaxBackward", "SoftmaxBackward")


def check(call: LossCall) -> list[Finding]:
    if call.task.kind in (Kind.MULTICLASS, Kind.LOG_PROBS):
        return _class_axis(call)
    if call.task.kind is Kind.UNKNOWN and isinstance(call.target, torch.Tensor):
        shape = broadcast_shape(call.input, call.target)
        return [_broadcast(call, shape)] if shape is not None else []
    return []


def broadcast_shape(a: torch.Tensor, b: torch.Tensor) -> torch.Size | None:
    """The shape ``a`` and ``b`` broadcast to, when it is larger than both (else None)."""
    if a.shape == b.shape:
        return None
    try:
        shape = torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        return None  # the loss itself raises on incompatible shapes
    return None if shape in (a.shape, b.shape) else shape


def _class_axis(call: LossCall) -> list[Finding]:
    source, target = call.input, call.target
    if source.dim() < 3 or source.shape[-1] < 2 or not isinstance(target, torch.Tensor):
        return []
    if target.dtype.is_floating_point and target.shape == source.shape:
        wrong = _sums_to_one(target, -1) and not _sums_to_one(target, 1)
        evidence = "the probability targets sum to 1 over the last axis"
    else:
        wrong = classes_last(source)
        evidence = "the classes come out of a Linear/softmax on the last axis"
    if not wrong:
        return []
    shape = tuple(source.shape)
    return [
        finding(
            "P811",
            f"{call.task.loss_name} gets input of shape {shape} and takes dim 1 (size "
            f"{shape[1]}) as the classes, but {evidence} (size {shape[-1]}): the loss "
            "normalises over the wrong axis and trains on nonsense",
            "Move the classes to dim 1 (`logits.transpose(1, 2)` / `permute(0, -1, 1)`), or "
            "flatten: `loss(logits.reshape(-1, C), targets.reshape(-1))`.",
            subject="outputs",
            details={"input_shape": list(shape), "target_shape": list(target.shape)},
        )
    ]


def classes_last(tensor: torch.Tensor) -> bool:
    """The tensor's last axis holds the classes: a Linear or last-axis softmax made it, and
    nothing in between moved an axis or reshaped the last one."""
    last = tensor.shape[-1]
    node = tensor.grad_fn
    while node is not None:
        name = type(node).__name__
        if name.startswith(_LAST_AXIS_PRODUCERS):
            return tuple(getattr(node, "_saved_mat2_sym_sizes", ()))[-1:] == (last,)
        if name.startswith(_SOFTMAX):
            dim = int(getattr(node, "_saved_dim", 0))
            return (dim - 2**64 if dim >= 2**63 else dim) in (-1, tensor.dim() - 1)
        if name.startswith(_MOVES_AXES) or not name.startswith(_KEEPS_AXES):
            return False
        sizes = tuple(getattr(node, "_saved_self_sym_sizes", (last,)))
        if not sizes or sizes[-1] != last:
            return False
        parents = [n for n, _ in node.next_functions if n is not None]
        node = parents[0] if parents else None
    return False


def _sums_to_one(values: torch.Tensor, dim: int) -> bool:
    return bool(((values.detach().double().sum(dim=dim) - 1).abs() <= SUM_TOLERANCE).all())


def _broadcast(call: LossCall, shape: torch.Size) -> Finding:
    target = call.target
    assert isinstance(target, torch.Tensor)
    return finding(
        "P812",
        f"{call.task.loss_name} gets input of shape {tuple(call.input.shape)} and target of "
        f"shape {tuple(target.shape)}, which broadcast to {tuple(shape)}: every output is "
        "compared with every target",
        "Make the shapes equal, e.g. `input.squeeze(-1)` or `target.unsqueeze(-1)`.",
        subject="outputs",
        details={
            "input_shape": list(call.input.shape),
            "target_shape": list(target.shape),
            "broadcast_shape": list(shape),
        },
    )
