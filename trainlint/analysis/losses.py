"""Where losses are computed, and what flows into their input."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import torch as T
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.values import Evaluator, Instance, Obj, TensorV, call_arg


@dataclass(frozen=True)
class LossCall:
    """A call computing a library loss: ``F.cross_entropy(x, y)`` or ``criterion(x, y)``."""

    call: cst.Call
    qualname: str  # the functional or class name of the loss
    input: cst.BaseExpression | None
    target: cst.BaseExpression | None
    constructor: cst.Call | None  # ``nn.CrossEntropyLoss(...)`` for module losses


def loss_calls(module: ModuleModel, ev: Evaluator, family: frozenset[str]) -> tuple[LossCall, ...]:
    """Calls in ``module`` that compute one of the losses in ``family`` (qualified names),
    in source order (found once per module: rules ask for every prediction and finding)."""
    return module.cached(("loss_calls", family, ev), lambda: tuple(_loss_calls(module, ev, family)))


def loss_call_at(call: cst.Call, module: ModuleModel, ev: Evaluator, family: frozenset[str]) -> LossCall | None:
    """The loss call of ``family`` that ``call`` is, if it is one."""
    index = module.cached(("loss_call_index", family, ev), lambda: {id(loss.call): loss for loss in loss_calls(module, ev, family)})
    return index.get(id(call))


def _loss_calls(module: ModuleModel, ev: Evaluator, family: frozenset[str]) -> Iterator[LossCall]:
    # A loss takes an input and a target: calls with fewer arguments are not evaluated.
    for call in (c for c in module.calls if len(c.args) >= 2):
        for qualname in ev.callee(call, module) & family:
            yield LossCall(call, qualname, call_arg(call, 0, "input"), call_arg(call, 1, "target"), None)
            break
        else:
            for value in ev.eval(call.func, module):
                if isinstance(value, Obj) and value.qualname in family:
                    yield LossCall(call, value.qualname, call_arg(call, 0, "input"), call_arg(call, 1, "target"), value.call)
                    break
                if isinstance(value, Instance):
                    found = _through_forward(call, value, ev, family)
                    if found is not None:
                        yield found
                        break


def _through_forward(call: cst.Call, instance: Instance, ev: Evaluator, family: frozenset[str]) -> LossCall | None:
    """``criterion(outputs, y)`` of a project loss module whose ``forward(self, logits,
    target)`` computes ``F.cross_entropy(logits, target)``: the loss's input is the call's
    argument bound to that parameter, at this call."""
    forward = ev.method(instance.cls, "forward")
    if forward is None:
        return None
    params = [p.name.value for p in (*forward.node.params.posonly_params, *forward.node.params.params)][1:]
    for inner in forward.module.calls_by_function.get(forward.node, []):
        for qualname in ev.callee(inner, forward.module) & family:
            argument = call_arg(inner, 0, "input")
            if isinstance(argument, cst.Name) and argument.value in params:
                index = params.index(argument.value)
                return LossCall(call, qualname, call_arg(call, index, argument.value), call_arg(call, index + 1, None), None)
    return None


def input_kinds(loss: LossCall, module: ModuleModel, ev: Evaluator) -> list[TensorV]:
    return ev.tensor_kinds(loss.input, module) if loss.input is not None else []


def inputs_of_kind(
    module: ModuleModel, ev: Evaluator, family: frozenset[str], kinds: tuple[str, ...]
) -> Iterator[tuple[LossCall, TensorV]]:
    """Loss calls of ``family`` whose input may be a tensor of one of ``kinds``, with the
    tensor of the first kind (in the given priority order) that was found."""
    for loss in loss_calls(module, ev, family):
        found = input_kinds(loss, module, ev)
        for kind in kinds:
            match = next((tensor for tensor in found if tensor.kind == kind), None)
            if match is not None:
                yield loss, match
                break


def describe_origin(tensor: TensorV, module: ModuleModel) -> str:
    """``F.softmax(...) at model.py:23`` or ``the softmax on line 12``."""
    if tensor.module is module:
        line = module.line_of(tensor.origin)
        return f"the {_verb(tensor)} on line {line}" if line else f"a {_verb(tensor)}"
    return f"the {_verb(tensor)} at {tensor.module.where(tensor.origin)}"


def short_name(qualname: str) -> str:
    return qualname.rsplit(".", 1)[-1]


def _verb(tensor: TensorV) -> str:
    return {"probs": "softmax", "log_probs": "log_softmax", "sigmoid": "sigmoid"}.get(tensor.kind, tensor.kind)


__all__ = ["LossCall", "describe_origin", "input_kinds", "loss_call_at", "loss_calls", "short_name"]
