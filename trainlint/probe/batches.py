"""Understanding, moving and running batches of the three supported shapes.

* ``(inputs, targets)`` tuples or lists: ``loss_fn(model(inputs), targets)``;
* mappings (Hugging Face style): ``model(**batch)`` returning ``.loss`` or ``["loss"]``;
* anything else, or any batch when ``step_fn`` is given: ``step_fn(model, batch) -> loss``.
"""

from __future__ import annotations

import enum
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

StepFn = Callable[[nn.Module, Any], torch.Tensor]
LABEL_KEYS = ("labels", "label")
MIN_FIXED, MAX_FIXED = 8, 32
# Enough batches for 2-3 gradient batches plus topping the fixed batch up to MIN_FIXED.
MAX_BATCHES = 8
# Beyond those, integer tensors (labels, ids) of more batches are read for the range checks
# (a rare bad label), within this budget; the batches themselves are not kept.
SCAN_BATCHES, SCAN_SECONDS, SCAN_ELEMENTS = 512, 1.0, 1 << 24


class BatchKind(str, enum.Enum):
    PAIR = "pair"
    DICT = "dict"
    CUSTOM = "step_fn"


class BatchStructureError(TypeError):
    """A batch the probe cannot run without a ``step_fn`` (or a ``loss_fn``)."""


def batch_kind(batch: Any, step_fn: StepFn | None) -> BatchKind:
    if step_fn is not None:
        return BatchKind.CUSTOM
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return BatchKind.PAIR
    if isinstance(batch, Mapping):
        return BatchKind.DICT
    shape = (
        f"{type(batch).__name__} of length {len(batch)}"
        if isinstance(batch, (tuple, list))
        else type(batch).__name__
    )
    raise BatchStructureError(
        f"the loader yields a {shape}; the probe understands (inputs, targets) pairs and "
        "dicts for model(**batch)"
    )


def tree_map(fn: Callable[[torch.Tensor], Any], obj: Any) -> Any:
    """Apply ``fn`` to every tensor inside nested tuples, lists and mappings."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        return {key: tree_map(fn, value) for key, value in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(tree_map(fn, value) for value in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(tree_map(fn, value) for value in obj)
    return obj


def tensors(obj: Any, prefix: str) -> list[tuple[str, torch.Tensor]]:
    """Every tensor inside ``obj`` with a readable path such as ``inputs[0]`` or ``batch['x']``."""
    if isinstance(obj, torch.Tensor):
        return [(prefix, obj)]
    if isinstance(obj, Mapping):
        return [item for k, v in obj.items() for item in tensors(v, f"{prefix}[{k!r}]")]
    if isinstance(obj, (tuple, list)):
        return [item for i, v in enumerate(obj) for item in tensors(v, f"{prefix}[{i}]")]
    return []


def to_device(batch: Any, device: torch.device) -> Any:
    return tree_map(lambda t: t.to(device), batch)


def split(batch: Any, kind: BatchKind) -> tuple[Any, Any]:
    """``(inputs, targets)`` of a batch; targets are None when the probe cannot tell."""
    if kind is BatchKind.PAIR:
        return batch[0], batch[1]
    if kind is BatchKind.DICT:
        inputs = {k: v for k, v in batch.items() if k not in LABEL_KEYS}
        targets = next((batch[k] for k in LABEL_KEYS if k in batch), None)
        return inputs, targets
    return batch, None


def batch_size(batch: Any) -> int | None:
    """Length of the leading dimension shared by the batch's tensors, if any."""
    sizes = {t.shape[0] for _, t in tensors(batch, "") if t.dim() > 0}
    return sizes.pop() if len(sizes) == 1 else (min(sizes) if sizes else None)


@dataclass
class Drawn:
    """The batches the probe runs, and the integer tensors of the batches it only read."""

    batches: list[Any]
    # (index of the batch in the loader, path in the batch, tensor): labels and ids.
    scanned: list[tuple[int, str, torch.Tensor]] = field(default_factory=list)
    scanned_batches: int = 0
    one_shot: bool = False


def draw(loader: Iterable[Any]) -> Drawn:
    """Up to ``MAX_BATCHES`` batches: at least 3, more only to reach ``MIN_FIXED`` samples.

    A re-iterable loader is then read further (same pass) for its integer tensors; a one-shot
    iterator (a generator) is not, since every batch read is a batch its owner loses.
    """
    one_shot = isinstance(loader, Iterator)
    drawn = Drawn([], one_shot=one_shot)
    samples = 0
    iterator = iter(loader)
    try:
        for batch in itertools.islice(iterator, MAX_BATCHES):
            drawn.batches.append(batch)
            samples += batch_size(batch) or 1
            if len(drawn.batches) >= 3 and samples >= MIN_FIXED:
                break
        if drawn.batches and not one_shot:
            _scan(iterator, drawn)
    finally:
        # DataLoader iterators with workers shut them down when collected.
        del iterator
    return drawn


def _scan(iterator: Iterator[Any], drawn: Drawn) -> None:
    start, elements = time.perf_counter(), 0
    for index, batch in enumerate(itertools.islice(iterator, SCAN_BATCHES)):
        found = [(p, t) for p, t in tensors(batch, "") if _integral(t)]
        drawn.scanned += [(len(drawn.batches) + index, p, t) for p, t in found]
        drawn.scanned_batches = index + 1
        elements += sum(t.numel() for _, t in found)
        if elements > SCAN_ELEMENTS or time.perf_counter() - start > SCAN_SECONDS:
            break


def _integral(tensor: torch.Tensor) -> bool:
    return not tensor.dtype.is_floating_point and tensor.dtype not in (torch.bool, torch.uint8)


def fixed_batch(batches: list[Any], kind: BatchKind) -> Any:
    """One batch of 8-32 samples to overfit: the first batch, topped up or trimmed.

    The same tensors are reused for every step, which also freezes any augmentation. A
    ``step_fn`` batch is opaque (a detector's list of images of different sizes and list of
    target dicts is not a tuple of fields), so it is used as it comes.
    """
    if kind is BatchKind.CUSTOM:
        return batches[0]
    chosen = batches[:1]
    samples = batch_size(batches[0]) or 0
    for batch in batches[1:]:
        if samples >= MIN_FIXED:
            break
        chosen.append(batch)
        samples += batch_size(batch) or 0
    merged = _concat(chosen) if len(chosen) > 1 else chosen[0]
    size = batch_size(merged)
    if size is not None and size > MAX_FIXED:
        merged = tree_map(lambda t: t[:MAX_FIXED] if t.dim() and t.shape[0] == size else t, merged)
    return merged


def _concat(batches: list[Any]) -> Any:
    """Concatenate same-structure batches along dim 0; the first batch alone if impossible."""
    first = batches[0]
    try:
        return _concat_tree(batches)
    except (RuntimeError, TypeError, ValueError, KeyError, IndexError):
        return first


def _concat_tree(items: list[Any]) -> Any:
    head = items[0]
    if isinstance(head, torch.Tensor):
        if head.dim() == 0:
            return head
        return torch.cat(items, dim=0)
    if isinstance(head, Mapping):
        return {key: _concat_tree([item[key] for item in items]) for key in head}
    if isinstance(head, tuple) and hasattr(head, "_fields"):
        return type(head)(*(_concat_tree(list(parts)) for parts in zip(*items)))
    if isinstance(head, (tuple, list)):
        if any(len(item) != len(head) for item in items):
            raise ValueError("batches of different lengths")
        return type(head)(_concat_tree(list(parts)) for parts in zip(*items))
    raise TypeError(f"cannot concatenate {type(head).__name__} batches")


def zero_inputs(batch: Any, kind: BatchKind) -> Any | None:
    """The batch with its float inputs replaced by zeros (targets kept), or None if unknown.

    Token ids are left alone, and a batch with no float input has no control: a sequence
    model fed token 0 everywhere can still memorise its targets by position, which says
    nothing about ignoring the input. Dict batches keep their labels and masks.
    """

    def zero(tensor: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(tensor) if tensor.dtype.is_floating_point else tensor

    if kind is BatchKind.PAIR:
        inputs = batch[0]
    elif kind is BatchKind.DICT:
        inputs = {k: v for k, v in batch.items() if k not in LABEL_KEYS and "mask" not in k}
    else:
        return None
    if not any(t.dtype.is_floating_point for _, t in tensors(inputs, "")):
        return None
    if kind is BatchKind.PAIR:
        return type(batch)([tree_map(zero, batch[0]), batch[1]])
    return {key: tree_map(zero, value) if key in inputs else value for key, value in batch.items()}


@dataclass
class Forward:
    """One forward pass: the loss inputs the probe inspects before computing the loss."""

    outputs: Any
    targets: Any
    model_loss: torch.Tensor | None = None

    @property
    def logits(self) -> torch.Tensor | None:
        """The output tensor a task-aware check can inspect (HF ``.logits`` included)."""
        if isinstance(self.outputs, torch.Tensor):
            return self.outputs
        logits = _field(self.outputs, "logits")
        return logits if isinstance(logits, torch.Tensor) else None


def _field(obj: Any, name: str) -> Any:
    value = getattr(obj, name, None)
    if value is None and isinstance(obj, Mapping):
        value = obj.get(name)
    return value


class Runner:
    """Runs batches of one kind through the model, the loss and the optional ``step_fn``."""

    def __init__(
        self, model: nn.Module, kind: BatchKind, loss_fn: Any, step_fn: StepFn | None
    ) -> None:
        if kind is BatchKind.PAIR and loss_fn is None:
            raise BatchStructureError(
                "the loader yields (inputs, targets) pairs but no loss_fn was given"
            )
        self.model = model
        self.kind = kind
        self.loss_fn = loss_fn
        self.step_fn = step_fn

    def forward(self, batch: Any) -> Forward:
        if self.kind is BatchKind.PAIR:
            return Forward(self.model(batch[0]), batch[1])
        if self.kind is BatchKind.DICT:
            outputs = self.model(**batch)
            return Forward(outputs, split(batch, self.kind)[1], _dict_loss(outputs))
        assert self.step_fn is not None
        return Forward(None, None, _as_loss(self.step_fn(self.model, batch), "step_fn"))

    def loss(self, forward: Forward) -> torch.Tensor:
        if self.kind is BatchKind.PAIR:
            return _as_loss(self.loss_fn(forward.outputs, forward.targets), "loss_fn")
        assert forward.model_loss is not None
        return forward.model_loss

    def step_loss(self, batch: Any) -> tuple[Forward, torch.Tensor]:
        forward = self.forward(batch)
        return forward, self.loss(forward)

    def loss_only(self, batch: Any) -> torch.Tensor:
        """The loss alone, so the outputs can be freed as soon as backward has run."""
        return self.loss(self.forward(batch))

    def peek_logits(self, batch: Any) -> torch.Tensor | None:
        """Logits of a dict batch computed *without* its labels, so no loss runs yet.

        Lets the label range be checked before the model's own loss could hit a CUDA
        device-side assert. Models that insist on labels simply skip this pre-check.
        """
        if self.kind is not BatchKind.DICT:
            return None
        unlabeled = {k: v for k, v in batch.items() if k not in LABEL_KEYS}
        try:
            with torch.no_grad():
                logits = Forward(self.model(**unlabeled), None).logits
        except Exception:  # noqa: BLE001 - any failure only means "cannot pre-check"
            return None
        return logits.detach() if isinstance(logits, torch.Tensor) else None


def _dict_loss(outputs: Any) -> torch.Tensor:
    loss = _field(outputs, "loss")
    if loss is None:
        raise BatchStructureError(
            "model(**batch) returned no `loss` (attribute or key); include the labels in "
            "the batch or pass step_fn"
        )
    return _as_loss(loss, "model(**batch).loss")


def _as_loss(value: Any, source: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise BatchStructureError(f"{source} must return a scalar loss tensor, got {shape}")
    return value.reshape(())
