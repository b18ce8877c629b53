"""The ``data`` check: what the loader hands the model, judged before any loss runs.

Everything here reads tensors only. Target ranges are checked after the forward pass (the
number of classes comes from the logits) but before the loss, because an out-of-range
class index makes CUDA raise a device-side assert that poisons the whole process.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from trainlint.diagnostics import Finding, Severity
from trainlint.probe.batches import BatchKind, batch_size, split, tensors
from trainlint.probe import stats
from trainlint.probe.codes import finding
from trainlint.probe.task import HF_IGNORE_INDEX, Kind, Task, class_axis

# Largest |mean| or std of a "normalized" input; raw 0-255 pixels sit far above both.
WARN_SCALE, INFO_SCALE = 20.0, 5.0
_TARGET_WORDS = ("mask", "label", "target", "box", "keypoint", "area")
MAX_LISTED = 10


def check_inputs(batch: Any, kind: BatchKind, model: nn.Module) -> list[Finding]:
    """Non-finite values, scale, constant features, BatchNorm with one sample, token ids."""
    inputs, targets = split(batch, kind)
    named = tensors(inputs, "inputs" if kind is not BatchKind.DICT else "batch")
    findings = [f for name, t in named for f in _non_finite(name, t, "P101")]
    if targets is not None:
        findings += [
            f for name, t in tensors(targets, "targets") for f in _non_finite(name, t, "P102")
        ]
    # Per-sample feature tensors only: 1-D side inputs (diffusion timesteps, lengths),
    # masks and targets have their own legitimate ranges.
    floats = [
        (n, t)
        for n, t in named
        if t.dtype.is_floating_point and t.dim() >= 2 and not _target_like(n)
    ]
    findings += _scales(floats)
    findings += _identical_samples(floats)
    findings += [f for name, t in floats for f in _constant_features(name, t)]
    findings += _single_sample_batchnorm(batch, model)
    integers = [(n, t) for n, t in named if _is_index_tensor(t) and "mask" not in n]
    findings += _token_ids(integers, model)
    if kind is BatchKind.DICT and isinstance(targets, torch.Tensor):
        findings += _token_labels(targets, model)
    return findings


def check_targets(targets: Any, logits: torch.Tensor | None, task: Task) -> list[Finding]:
    """Class indices within ``[0, C)`` and integral; BCE targets within ``[0, 1]``."""
    if not isinstance(targets, torch.Tensor) or targets.numel() == 0 or not task.direct:
        return []  # a wrapper around the loss may remap targets: nothing to assume
    if task.classification:
        return _class_targets(targets, logits, task)
    if task.binary and targets.dtype.is_floating_point:
        return _binary_targets(targets, task)
    if task.regression and targets.dtype.is_floating_point:
        return _target_scale(targets)
    return []


def _non_finite(name: str, tensor: torch.Tensor, code: str) -> list[Finding]:
    if not tensor.dtype.is_floating_point or stats.all_finite(tensor):
        return []
    nan = stats.count_nan(tensor)
    inf = int(torch.isinf(tensor).sum())
    return [
        finding(
            code,
            f"`{name}` contains {nan} NaN and {inf} Inf values out of {tensor.numel()}",
            "Clean the data (impute or drop rows), check divisions and logs in the dataset "
            "code, and assert `torch.isfinite(x).all()` in the Dataset.",
            subject=name,
            details={"nan": nan, "inf": inf, "numel": tensor.numel()},
        )
    ]


def _target_like(name: str) -> bool:
    """Targets inside inputs (a step_fn batch of images and target dicts): detection
    boxes are in pixels and class ids are not features, by design."""
    lowered = name.lower()
    return any(word in lowered for word in _TARGET_WORDS)


def _scales(floats: list[tuple[str, torch.Tensor]]) -> list[Finding]:
    """One finding per input, or one for a list of per-sample tensors (``[0]``, ``[1]``...)."""
    groups: dict[str, list[Finding]] = {}
    for name, tensor in floats:
        for item in _scale(name, tensor):
            groups.setdefault(re.sub(r"\[\d+\]$", "[i]", name), []).append(item)
    merged = []
    for pattern, members in groups.items():
        first = members[0]
        if len(members) > 1:
            first = replace(
                first,
                message=first.message + f" (and {len(members) - 1} more `{pattern}` like it)",
                details={**first.details, "tensors": len(members)},
            )
        merged.append(first)
    return merged


def _scale(name: str, tensor: torch.Tensor) -> list[Finding]:
    moments = stats.finite_moments(tensor)
    if moments is None or max(abs(moments.mean), moments.std) <= INFO_SCALE:
        return []
    mean, std = moments.mean, moments.std
    severity = Severity.WARNING if max(abs(mean), std) > WARN_SCALE else Severity.INFO
    return [
        finding(
            "P106",
            f"`{name}` is far from normalized (mean {mean:.3g}, std {std:.3g}); large inputs "
            "give large initial activations and slow, unstable training",
            "Standardize the inputs with training-set statistics, e.g. "
            "`transforms.Normalize(mean, std)` or `(x - mean) / std`.",
            subject=name,
            details={"mean": mean, "std": std},
            severity=severity,
        )
    ]


def _target_scale(targets: torch.Tensor) -> list[Finding]:
    """Info only: unscaled regression targets train, just slowly (overfit_batch shows how)."""
    moments = stats.finite_moments(targets)
    if moments is None or max(abs(moments.mean), moments.std) <= WARN_SCALE:
        return []
    mean, std = moments.mean, moments.std
    return [
        finding(
            "P111",
            f"regression targets are far from normalized (mean {mean:.3g}, std {std:.3g}); "
            "the output layer must learn a large offset and scale, which takes many steps",
            "Standardize the targets with training-set statistics and invert the transform "
            "at prediction time.",
            subject="targets",
            details={"mean": mean, "std": std},
        )
    ]


def _identical_samples(floats: list[tuple[str, torch.Tensor]]) -> list[Finding]:
    """Every sample identical in *every* float input: the model cannot tell them apart."""
    if not floats or any(t.shape[0] < 2 or not bool((t == t[:1]).all()) for _, t in floats):
        return []
    name, tensor = floats[0]
    return [
        finding(
            "P107",
            f"all {tensor.shape[0]} samples of `{name}` in the batch are identical",
            "Check the Dataset's __getitem__ (an index that is ignored, a cached sample) "
            "and the collate function.",
            subject=name,
            details={"batch_size": int(tensor.shape[0])},
        )
    ]


def _constant_features(name: str, tensor: torch.Tensor) -> list[Finding]:
    if tensor.dim() != 2 or tensor.shape[0] < 4 or bool((tensor == tensor[:1]).all()):
        return []
    constant = (tensor == tensor[:1]).all(dim=0).nonzero().flatten().tolist()
    if not constant:
        return []
    return [
        finding(
            "P108",
            f"{len(constant)} of {tensor.shape[1]} features of `{name}` are constant across "
            f"the batch (columns {constant[:MAX_LISTED]})",
            "Constant features carry no signal; drop them or check the feature pipeline.",
            subject=name,
            details={"columns": constant[:MAX_LISTED], "count": len(constant)},
        )
    ]


def _single_sample_batchnorm(batch: Any, model: nn.Module) -> list[Finding]:
    if batch_size(batch) != 1:
        return []
    norms = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]
    if not norms:
        return []
    return [
        finding(
            "P109",
            f"the loader yields batches of 1 while `{norms[0]}` (BatchNorm) is in train "
            "mode: batch statistics of one sample are meaningless (BatchNorm1d raises)",
            "Use a larger batch, `drop_last=True` to avoid a final batch of 1, or "
            "GroupNorm/LayerNorm instead of BatchNorm.",
            subject=norms[0],
            details={"batchnorm_modules": norms[:MAX_LISTED]},
        )
    ]


def _is_index_tensor(tensor: torch.Tensor) -> bool:
    """Token-id shaped: int32/int64 of shape (N,) or (N, T). uint8 images are not ids."""
    return tensor.dtype in (torch.int64, torch.int32) and 1 <= tensor.dim() <= 2


def _token_ids(named: list[tuple[str, torch.Tensor]], model: nn.Module) -> list[Finding]:
    sizes = [m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)]
    if not sizes or not named:
        return []
    table = max(sizes)
    findings = []
    for name, ids in named:
        if ids.numel() == 0:
            continue
        low, high = int(ids.min()), int(ids.max())
        if low >= 0 and high < table:
            continue
        findings.append(
            finding(
                "P110",
                f"`{name}` holds ids in [{low}, {high}] but the largest embedding table has "
                f"{table} rows: the lookup fails (a device-side assert on CUDA)",
                "Make the tokenizer's vocabulary size match `nn.Embedding(num_embeddings)` "
                "and map unknown or padding tokens to valid ids.",
                subject=name,
                details={"min": low, "max": high, "num_embeddings": table},
            )
        )
    return findings


def _token_labels(labels: torch.Tensor, model: nn.Module) -> list[Finding]:
    """Language-model and seq2seq labels ``(N, T)`` are token ids: check them against the
    vocabulary before the model runs (a seq2seq decoder looks them up before any loss)."""
    if not _is_index_tensor(labels) or labels.dim() != 2:
        return []
    vocab = _vocabulary(model)
    valid = labels[labels != HF_IGNORE_INDEX]
    if vocab is None or valid.numel() == 0:
        return []
    low, high = int(valid.min()), int(valid.max())
    if low >= 0 and high < vocab:
        return []
    return [
        finding(
            "P103",
            f"token labels span [{low}, {high}] but the model's vocabulary has {vocab} entries "
            f"(ignore index {HF_IGNORE_INDEX} excluded): the lookup or the loss fails (a "
            "device-side assert on CUDA)",
            "Tokenize the labels with the model's own tokenizer, and mark padding with -100.",
            subject="labels",
            details={"min": low, "max": high, "classes": vocab, "ignore_index": HF_IGNORE_INDEX},
        )
    ]


def _vocabulary(model: nn.Module) -> int | None:
    """The output vocabulary of a Hugging Face style model (``get_output_embeddings``)."""
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    weight = getattr(head, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return int(weight.shape[0])
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    return size if isinstance(size, int) and size > 0 else None


def _class_targets(targets: torch.Tensor, logits: torch.Tensor | None, task: Task) -> list[Finding]:
    axis = class_axis(task, logits, targets)
    if targets.dtype.is_floating_point:
        return _float_class_targets(targets, logits, axis, task)
    classes = int(logits.shape[axis]) if logits is not None and axis is not None else None
    valid = targets if task.ignore_index is None else targets[targets != task.ignore_index]
    if valid.numel() == 0:
        return []
    low, high = int(valid.min()), int(valid.max())
    too_high = classes is not None and high >= classes
    if low >= 0 and not too_high:
        return []
    bound = f"[0, {classes})" if classes is not None else "non-negative"
    ignore = (
        f" (ignore_index={task.ignore_index} excluded)" if task.ignore_index is not None else ""
    )
    return [
        finding(
            "P103",
            f"class targets span [{low}, {high}] but {task.loss_name} needs {bound}{ignore}; "
            "out-of-range labels raise on CPU and cause a device-side assert on CUDA",
            "Make the output layer as wide as the number of classes, remap labels to "
            "0..C-1 (1-based labels are a classic), and use ignore_index for padding.",
            subject="targets",
            details={
                "min": low,
                "max": high,
                "classes": classes,
                "ignore_index": task.ignore_index,
            },
        )
    ]


def _float_class_targets(
    targets: torch.Tensor, logits: torch.Tensor | None, axis: int | None, task: Task
) -> list[Finding]:
    """Float targets are fine as class probabilities (logits' shape), not as indices."""
    if logits is None or axis is None or targets.shape == logits.shape:
        return []
    return [
        finding(
            "P104",
            f"class indices are stored as {targets.dtype} but {task.loss_name} needs integer "
            "(torch.long) class indices",
            "Convert the labels with `.long()` in the Dataset or the collate function.",
            subject="targets",
            details={"dtype": str(targets.dtype)},
        )
    ]


def _binary_targets(targets: torch.Tensor, task: Task) -> list[Finding]:
    finite = targets[torch.isfinite(targets)]
    if finite.numel() == 0:
        return []
    low, high = float(finite.min()), float(finite.max())
    if low >= 0.0 and high <= 1.0:
        return []
    hint = (
        "BCE targets are probabilities: use 0/1 labels (or soft labels in [0, 1]); for "
        "more than two classes use CrossEntropyLoss with class indices."
    )
    if task.kind is Kind.BINARY_LOGITS and low == -1.0 and high == 1.0:
        hint = "Map -1/+1 labels to 0/1 with `(y + 1) / 2`."
    return [
        finding(
            "P105",
            f"{task.loss_name} targets span [{low:.3g}, {high:.3g}], outside [0, 1]",
            hint,
            subject="targets",
            details={"min": low, "max": high},
        )
    ]
