"""Where losses are computed, and what flows into their input."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from trainlint.analysis.module import ModuleModel, Scope
from trainlint.analysis.names import name_uses, root_name, terminal_name
from trainlint.analysis.values import Evaluator, Instance, LibRef, Obj, TensorV, call_arg


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


def removable_activation(
    call: cst.Call, module: ModuleModel, ev: Evaluator, family: frozenset[str], kind: str, activation: str
) -> tuple[cst.Call, cst.BaseExpression] | None:
    """The ``activation`` call (``softmax``, ``sigmoid``: producing tensors of ``kind``) whose
    result is the input of the ``family`` loss computed by ``call``, with the operand that
    can replace it: only when that result is used by the loss alone, so dropping the
    activation changes nothing else."""
    loss = loss_call_at(call, module, ev, family)
    if loss is None or loss.input is None:
        return None
    origins = [t.origin for t in input_kinds(loss, module, ev) if t.kind == kind and t.module is module]
    if len(origins) == 1 and isinstance(origins[0], cst.Call) and _used_only_by(origins[0], loss.input, module):
        operand = _activation_operand(origins[0], activation, module, ev)
        return (origins[0], operand) if operand is not None else None
    return None


def _activation_operand(call: cst.Call, activation: str, module: ModuleModel, ev: Evaluator) -> cst.BaseExpression | None:
    """``x`` in ``F.softmax(x, dim=1)``, ``torch.softmax(x, 1)`` and ``x.softmax(1)``."""
    if terminal_name(call.func) != activation:
        return None  # an ``nn.Softmax`` layer or a helper: the rewrite is not evident
    func = call.func
    if not isinstance(func, cst.Attribute):
        return call_arg(call, 0, "input")  # ``softmax`` imported from a library
    if any(isinstance(v, LibRef) for v in ev.eval(func.value, module)):
        return call_arg(call, 0, "input")  # ``F.softmax(x)``
    kinds = _binding_kinds(func.value, module)
    if kinds and "import" not in kinds:
        return func.value  # ``x.softmax(1)``, ``self.fc(x).softmax(1)``
    return None  # an unresolved ``a.b.softmax(...)``: a module or a tensor?


def _binding_kinds(expr: cst.BaseExpression, module: ModuleModel) -> set[str]:
    """How the leftmost name of ``expr`` is bound in the scopes around it."""
    root = root_name(expr)
    scope: Scope | None = module.scope_of(expr)
    kinds: set[str] = set()
    while scope is not None and root is not None:
        kinds.update(binding.kind for binding in scope.bindings.get(root, []))
        scope = scope.parent
    return kinds


def _used_only_by(activation: cst.Call, loss_input: cst.BaseExpression, module: ModuleModel) -> bool:
    """The activation (possibly followed by tensor methods: ``.squeeze(1)``) is the loss
    input itself, or is assigned to a name that appears nowhere else in its function than
    in that assignment and the loss call."""
    value = _method_chain_top(activation, module)
    if value is loss_input:
        return True
    if not isinstance(loss_input, cst.Name):
        return False
    assignment = module.parent_of(value)
    if not (isinstance(assignment, cst.Assign) and len(assignment.targets) == 1):
        return False
    target = assignment.targets[0].target
    if not (isinstance(target, cst.Name) and target.value == loss_input.value):
        return False
    scope = module.enclosing_function(activation) or module.tree
    return name_uses(scope, loss_input.value) == 2


def _method_chain_top(node: cst.BaseExpression, module: ModuleModel) -> cst.BaseExpression:
    """``torch.sigmoid(x).squeeze(1)`` for ``torch.sigmoid(x)``: methods called on it."""
    while True:
        attribute = module.parent_of(node)
        call = module.parent_of(attribute) if attribute is not None else None
        if not (isinstance(attribute, cst.Attribute) and attribute.value is node and isinstance(call, cst.Call) and call.func is attribute):
            return node
        node = call


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


__all__ = ["LossCall", "describe_origin", "input_kinds", "loss_call_at", "loss_calls", "removable_activation", "short_name"]
