"""The ``data`` check beyond the probed batches: label ranges over more of the loader.

A label that is out of range in one sample out of thousands never shows up in the three
batches the probe trains on, yet crashes the run (a device-side assert on CUDA) hours
later. The labels of a whole dataset are cheap to read when it exposes them
(``dataset.targets``, a ``TensorDataset``); otherwise the probe reads the integer tensors of
more batches of the same loader pass, without running the model on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from trainlint.diagnostics import Finding
from trainlint.probe.batches import BatchKind, tensors
from trainlint.probe.codes import finding
from trainlint.probe.spy import LossCall
from trainlint.probe.task import Kind

MAX_DATASET_LABELS = 10_000_000


@dataclass(frozen=True)
class Range:
    """Valid class indices ``[0, classes)``, and the index the loss ignores."""

    classes: int
    ignore_index: int | None
    loss_name: str


def valid_range(call: LossCall) -> Range | None:
    """The class range a cross-entropy/NLL call accepts, from its input's class axis."""
    if call.task.kind not in (Kind.MULTICLASS, Kind.LOG_PROBS):
        return None
    target = call.target
    if not isinstance(target, torch.Tensor) or target.dtype.is_floating_point:
        return None
    axis = 1 if call.input.dim() >= 2 else 0
    return Range(int(call.input.shape[axis]), call.task.ignore_index, call.task.loss_name)


def target_path(batch: Any, kind: BatchKind, target: Any) -> str | None:
    """Where the loss's target sits in the batch: the same tensor or a view of its memory."""
    if kind is BatchKind.PAIR and isinstance(batch, (tuple, list)):
        return "[1]"
    if isinstance(target, torch.Tensor):
        for path, tensor in tensors(batch, ""):
            if tensor is target or (
                tensor.numel() == target.numel()
                and tensor.untyped_storage().data_ptr() == target.untyped_storage().data_ptr()
            ):
                return path
    if kind is BatchKind.DICT and isinstance(batch, Mapping):
        return next((f"[{k!r}]" for k in ("labels", "label") if k in batch), None)
    return None


def dataset_labels(loader: Any) -> torch.Tensor | None:
    """Every label of ``loader.dataset`` when the dataset exposes them without loading samples."""
    dataset = getattr(loader, "dataset", None)
    indices = None
    while dataset is not None and hasattr(dataset, "indices") and hasattr(dataset, "dataset"):
        indices = dataset.indices if indices is None else [dataset.indices[i] for i in indices]
        dataset = dataset.dataset  # torch.utils.data.Subset, possibly nested
    labels = _labels_of(dataset)
    if labels is None:
        return None
    return labels[torch.as_tensor(indices, dtype=torch.long)] if indices is not None else labels


def _labels_of(dataset: Any) -> torch.Tensor | None:
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return dataset.tensors[1] if len(dataset.tensors) == 2 else None
    values = getattr(dataset, "targets", None)
    if values is None:
        return None
    try:
        labels = torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError):  # lists of strings, ragged targets
        return None
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        return None
    return labels if 0 < labels.numel() <= MAX_DATASET_LABELS else None


def check(
    candidates: list[tuple[int, torch.Tensor]],
    read: int,
    valid: Range,
    dataset: torch.Tensor | None,
) -> tuple[list[Finding], str]:
    """P103 for labels beyond the first batch, and a line for the data summary.

    ``candidates`` are (index in the loader, labels) of the other batches drawn or read;
    ``read`` counts the batches they come from.
    """
    if dataset is not None:
        bad = _outside(dataset, valid)
        where = f"all {dataset.numel()} labels of the dataset"
        return ([_finding(bad, valid, "the dataset", {"source": "dataset"})] if bad else []), where
    where = f"the labels of {read} more batch(es)" if read else ""
    for index, labels in candidates:
        bad = _outside(labels, valid)
        if bad:
            return [_finding(bad, valid, f"batch {index} of the loader", {"batch": index})], where
    return [], where


def _outside(labels: torch.Tensor, valid: Range) -> tuple[int, int, int] | None:
    """(count, min, max) of the labels outside ``[0, classes)``, ignore_index excluded."""
    values = labels.flatten()
    if valid.ignore_index is not None:
        values = values[values != valid.ignore_index]
    bad = values[(values < 0) | (values >= valid.classes)]
    if bad.numel() == 0:
        return None
    return int(bad.numel()), int(values.min()), int(values.max())


def _finding(
    bad: tuple[int, int, int], valid: Range, where: str, details: dict[str, Any]
) -> Finding:
    count, low, high = bad
    ignore = f" (ignore_index={valid.ignore_index} excluded)" if valid.ignore_index is not None else ""
    return finding(
        "P103",
        f"{count} label(s) in {where} are outside [0, {valid.classes}) for {valid.loss_name}"
        f"{ignore}: labels span [{low}, {high}]. The probed batches were fine, so training "
        "crashes later (a device-side assert on CUDA) when it reaches them",
        "Find and fix or drop those samples; make the output layer as wide as the number of "
        "classes, and use ignore_index for padding.",
        subject="targets",
        details={
            "min": low,
            "max": high,
            "classes": valid.classes,
            "ignore_index": valid.ignore_index,
            "count": count,
            **details,
        },
    )
