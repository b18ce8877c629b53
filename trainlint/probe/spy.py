"""Watching the user's own step from the inside: a ``TorchFunctionMode`` on one forward.

``probe()`` cannot know what a ``step_fn``, a Lightning ``training_step`` or a Hugging Face
model does with its outputs. While the spy is active every torch function call passes
through it, so it sees the arguments of the real loss calls (``F.cross_entropy`` is also
what ``nn.CrossEntropyLoss`` and HF models call), of embedding lookups and of dropout,
whatever code made them. It is only active for single forwards: the Python round trip per
op would slow a whole training run down.

Before a loss or an embedding lookup runs, ``gate`` may refuse its arguments (labels out of
range): raising :class:`GateStop` there prevents a CUDA device-side assert.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from trainlint.diagnostics import Finding
from trainlint.probe.errors import ModuleStack
from trainlint.probe.task import HF_IGNORE_INDEX, Kind, Task

LOSS_KINDS: dict[Callable[..., Any], Kind] = {
    F.cross_entropy: Kind.MULTICLASS,
    F.nll_loss: Kind.LOG_PROBS,
    F.binary_cross_entropy_with_logits: Kind.BINARY_LOGITS,
    F.binary_cross_entropy: Kind.BINARY_PROBS,
    F.mse_loss: Kind.REGRESSION,
    F.l1_loss: Kind.REGRESSION_L1,
    F.smooth_l1_loss: Kind.REGRESSION_L1,
    F.huber_loss: Kind.REGRESSION_L1,
    # Element-wise losses with no expected initial value: only their shapes are checked.
    F.kl_div: Kind.UNKNOWN,
    F.poisson_nll_loss: Kind.UNKNOWN,
    F.soft_margin_loss: Kind.UNKNOWN,
}
# Dropout functions and the default of their ``training`` argument.
_DROPOUTS: dict[Callable[..., Any], bool] = {
    F.dropout: True,
    F.dropout1d: True,
    F.dropout2d: True,
    F.dropout3d: True,
    F.alpha_dropout: False,
    F.feature_alpha_dropout: False,
}
_SDPA = F.scaled_dot_product_attention
_RANDOM: set[Callable[..., Any]] = {
    torch.rand,
    torch.randn,
    torch.rand_like,
    torch.randn_like,
    torch.randint,
    torch.randint_like,
    torch.bernoulli,
    torch.normal,
    torch.multinomial,
    torch.randperm,
    torch.Tensor.normal_,
    torch.Tensor.uniform_,
    torch.Tensor.bernoulli_,
    torch.Tensor.exponential_,
    torch.Tensor.random_,
}


class GateStop(Exception):
    """Raised from inside the user's step when ``gate`` refuses a loss or lookup's arguments."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__("; ".join(f.message for f in findings))
        self.findings = findings


@dataclass
class LossCall:
    """One call of a known loss function, with the tensors it received."""

    function: str
    task: Task
    input: torch.Tensor
    target: Any
    module: str | None
    result: torch.Tensor | None = None


@dataclass
class Lookup:
    """One embedding lookup: the ids, the table's size, and (when asked) a leaf output."""

    ids: torch.Tensor
    rows: int
    module: str | None
    output: torch.Tensor


@dataclass
class DropoutCall:
    function: str
    p: float
    training: bool
    module: str | None
    # The train/eval flag of the module that made the call (None outside the model).
    module_training: bool | None


Gate = Callable[[LossCall], None]
LookupGate = Callable[[Lookup], None]


@dataclass
class SpyLog:
    """What one spied forward (and loss) did."""

    losses: list[LossCall] = field(default_factory=list)
    lookups: list[Lookup] = field(default_factory=list)
    dropouts: list[DropoutCall] = field(default_factory=list)
    random: list[tuple[str, str | None]] = field(default_factory=list)
    # Unregistered trainable tensors used with grad enabled: name -> module that used them.
    shadow_used: dict[str, str | None] = field(default_factory=dict)

    def main_loss(self, loss: torch.Tensor | None) -> LossCall | None:
        """The loss call whose result the step returned (identity, else the same value)."""
        if loss is None:
            return None
        for call in self.losses:
            if call.result is loss:
                return call
        value = float(loss.detach())
        for call in self.losses:
            if (
                call.result is not None
                and call.result.numel() == 1
                and abs(float(call.result.detach()) - value) <= 1e-6 * max(1.0, abs(value))
            ):
                return call
        return None


class Spy(TorchFunctionMode):
    """Records loss calls, lookups, dropout, random draws and unregistered parameters.

    ``leaf_lookups`` replaces every embedding output by a fresh leaf that requires grad, so
    the dependency check can differentiate the outputs with respect to each token.
    """

    def __init__(
        self,
        stack: ModuleStack,
        modes: Mapping[str, bool] | None = None,
        gate: Gate | None = None,
        lookup_gate: LookupGate | None = None,
        shadow: Mapping[int, str] | None = None,
        leaf_lookups: bool = False,
    ) -> None:
        super().__init__()
        self.log = SpyLog()
        self._stack = stack
        self._modes = modes or {}
        self._gate = gate
        self._lookup_gate = lookup_gate
        self._shadow = dict(shadow or {})
        self._leaf_lookups = leaf_lookups
        self._handlers: dict[Callable[..., Any], Callable[..., Any]] = {
            **{fn: self._loss for fn in LOSS_KINDS},
            **{fn: self._dropout for fn in _DROPOUTS},
            _SDPA: self._attention,
            F.embedding: self._embedding,
            **{fn: self._random for fn in _RANDOM},
        }

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if self._shadow:
            self._scan(args, kwargs)
        handler = self._handlers.get(func)
        if handler is None:
            return func(*args, **kwargs)
        return handler(func, args, kwargs)

    # ------------------------------------------------------------------ handlers
    def _loss(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        bound = _bind(func, args, kwargs)
        source, target = bound.get("input"), bound.get("target")
        if not isinstance(source, torch.Tensor):
            return func(*args, **kwargs)
        call = LossCall(
            func.__name__, _call_task(func, bound), source, target, self._stack.current()
        )
        if self._gate is not None:
            self._gate(call)
        call.result = func(*args, **kwargs)
        self.log.losses.append(call)
        return call.result

    def _embedding(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        bound = _bind(func, args, kwargs)
        ids, weight = bound.get("input"), bound.get("weight")
        if not isinstance(ids, torch.Tensor) or not isinstance(weight, torch.Tensor):
            return func(*args, **kwargs)
        lookup = Lookup(ids, int(weight.shape[0]), self._stack.current(), ids)
        if self._lookup_gate is not None:
            self._lookup_gate(lookup)
        output = func(*args, **kwargs)
        lookup.output = output
        self.log.lookups.append(lookup)
        if self._leaf_lookups and output.dtype.is_floating_point:
            lookup.output = output.detach().requires_grad_(True)
            return lookup.output.clone()  # user code may modify it in place; a leaf refuses
        return output

    def _dropout(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        bound = _bind(func, args, kwargs)
        training = bool(bound.get("training", _DROPOUTS[func]))
        self._record_dropout(func.__name__, float(bound.get("p", 0.5)), training)
        return func(*args, **kwargs)

    def _attention(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        p = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
        if isinstance(p, (int, float)) and p > 0:
            self._record_dropout("scaled_dot_product_attention", float(p), True)
        return func(*args, **kwargs)

    def _random(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        module = self._stack.current()
        if module is not None:
            self.log.random.append((getattr(func, "__name__", str(func)), module))
        return func(*args, **kwargs)

    def _record_dropout(self, function: str, p: float, training: bool) -> None:
        module = self._stack.current()
        self.log.dropouts.append(
            DropoutCall(function, p, training, module, self._modes.get(module or "", None))
        )

    def _scan(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not torch.is_grad_enabled():
            return
        for value in _flat(args, kwargs):
            name = self._shadow.get(id(value))
            if name is not None and name not in self.log.shadow_used:
                self.log.shadow_used[name] = self._stack.current()


def _flat(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Any]:
    for value in (*args, *kwargs.values()):
        if isinstance(value, (list, tuple)):
            yield from value
        else:
            yield value


_SIGNATURES: dict[Callable[..., Any], inspect.Signature] = {}


def _bind(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name (defaults included); empty when they do not bind."""
    signature = _SIGNATURES.get(func)
    if signature is None:
        signature = _SIGNATURES[func] = inspect.signature(func)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return {}
    bound.apply_defaults()
    return dict(bound.arguments)


def _call_task(func: Callable[..., Any], bound: dict[str, Any]) -> Task:
    kind = LOSS_KINDS[func]
    classification = kind in (Kind.MULTICLASS, Kind.LOG_PROBS)
    ignore = bound.get("ignore_index", HF_IGNORE_INDEX) if classification else None
    return Task(
        kind,
        f"F.{func.__name__}",
        ignore_index=int(ignore) if isinstance(ignore, int) else None,
        reduction=str(bound.get("reduction") or "mean"),
        label_smoothing=float(bound.get("label_smoothing") or 0.0),
        pos_weight=bound.get("pos_weight"),
    )
