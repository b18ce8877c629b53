"""Freezing and unfreezing parameters: ``requires_grad`` switches, and the ones that do
nothing.

Parameters are frozen with ``p.requires_grad = False`` (a parameter) or
``module.requires_grad_(False)`` (every parameter of a module). Two look-alikes do
nothing: an attribute spelt almost like ``requires_grad`` (a new attribute on the tensor),
and ``module.requires_grad = False`` (a plain attribute on the module; its parameters keep
training). A switch here is one of the effective forms, with the module it acts on: the
model of ``for p in model.parameters()``, or the receiver of ``requires_grad_``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from trainlint.analysis.brains import torch as T
from trainlint.analysis.models import SUBMODULE_NAME, is_model, is_model_value
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted
from trainlint.analysis.values import Evaluator, Obj, call_arg, literal_value
from trainlint.analysis.walk import iter_children

FLAG = "requires_grad"
SETTER = "requires_grad_"
PARAMETER_ITERATORS = frozenset({"parameters", "named_parameters"})
MODULE_ITERATORS = frozenset({"modules", "children", "named_modules", "named_children"})
# Attributes of a module that hold parameters, not submodules.
PARAMETER_ATTRIBUTES = frozenset({"weight", "bias"})


@dataclass(frozen=True)
class Switch:
    """An effective ``requires_grad`` switch: ``node`` (the loop or the call) sets the
    flag to ``value`` on parameters of ``owner``; ``blanket`` when it sets every one of
    them (no condition selects some)."""

    node: cst.CSTNode
    owner: cst.BaseExpression
    value: bool
    blanket: bool


def misspelt(attr: str) -> bool:
    """``require_grad``, ``requires_grads``, ``requiresGrad``: almost ``requires_grad``."""
    if attr in (FLAG, SETTER):
        return False
    normal = attr.replace("_", "").lower()
    return "grad" in normal and _distance(normal, FLAG.replace("_", "")) <= 2


def _distance(a: str, b: str) -> int:
    """Levenshtein distance (the words are short)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def flag_assignments(module: ModuleModel) -> Iterator[tuple[cst.Assign, cst.Attribute]]:
    """``x.<attr> = value`` where ``attr`` is ``requires_grad`` or a misspelling of it."""
    for assign in module.assigns:
        for target in assign.targets:
            attribute = target.target
            if isinstance(attribute, cst.Attribute) and (attribute.attr.value == FLAG or misspelt(attribute.attr.value)):
                yield assign, attribute


def is_read(attr: str, module: ModuleModel) -> bool:
    """``attr`` is read somewhere in the file (``if self.require_grad:``): a project's own
    attribute, not a mistake."""
    return next(reads(module.tree, attr, module), None) is not None


def reads(root: cst.CSTNode, attr: str, module: ModuleModel) -> Iterator[cst.Attribute]:
    """``x.<attr>`` inside ``root`` where it is read, not assigned."""
    pending: list[cst.CSTNode] = [root]
    while pending:
        node = pending.pop()
        if isinstance(node, cst.Attribute) and node.attr.value == attr:
            parent = module.parent_of(node)
            if not (isinstance(parent, cst.AssignTarget) and parent.target is node):
                yield node
        pending.extend(iter_children(node))


def is_module(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    """``expr`` is an ``nn.Module`` (not a parameter or a tensor): built as one, iterated
    from ``model.modules()``, or unknown and named like a model."""
    known = _module_by_code(expr, module, ev)
    if known is not None:
        return known
    if isinstance(expr, cst.Attribute) and SUBMODULE_NAME.match(expr.attr.value) and is_module(expr.value, module, ev):
        return True  # ``model.fc`` of a library model
    return is_model(expr, module, ev)


def certainly_module(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    """``expr`` is an ``nn.Module`` by what the code says, not by its name."""
    return _module_by_code(expr, module, ev) is True


def _module_by_code(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool | None:
    """Whether the code says ``expr`` is a module (built as one, iterated from
    ``model.modules()``, a submodule-named attribute of one); ``None`` when only its name
    could tell."""
    if isinstance(expr, cst.Attribute) and expr.attr.value in PARAMETER_ATTRIBUTES:
        return False
    loop = _iterating_loop(expr, module)
    if loop is not None:
        return _iterated_method(loop) in MODULE_ITERATORS
    evaluated = ev.eval(expr, module)
    values = [v for v in evaluated if not (isinstance(v, Obj) and v.qualname in T.PARAMETER_CLASSES)]
    if len(values) != len(evaluated):
        return False
    if values:
        return all(is_model_value(v, ev) for v in values)
    if isinstance(expr, cst.Attribute) and SUBMODULE_NAME.match(expr.attr.value) and certainly_module(expr.value, module, ev):
        return True
    return None


def is_parameter(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    """``p`` of ``for p in model.parameters()``, ``layer.weight``, an ``nn.Parameter``:
    a leaf tensor whose flag can be set."""
    if isinstance(expr, cst.Attribute) and expr.attr.value in PARAMETER_ATTRIBUTES:
        return True
    loop = _iterating_loop(expr, module)
    if loop is not None:
        return _iterated_method(loop) in PARAMETER_ITERATORS
    values = ev.eval(expr, module)
    return bool(values) and all(isinstance(v, Obj) and v.qualname in T.PARAMETER_CLASSES for v in values)


def _iterating_loop(expr: cst.BaseExpression, module: ModuleModel) -> cst.For | None:
    """The ``for`` whose target binds the name ``expr`` (``p`` or ``(name, p)``)."""
    if not isinstance(expr, cst.Name):
        return None
    for loop in module.enclosing_loops(expr):
        if isinstance(loop, cst.For) and _binds(loop.target, expr.value):
            return loop
    return None


def _binds(target: cst.BaseExpression, name: str) -> bool:
    if isinstance(target, cst.Name):
        return target.value == name
    if isinstance(target, (cst.Tuple, cst.List)):
        return any(_binds(e.value, name) for e in target.elements)
    return False


def _iterated_method(loop: cst.For) -> str | None:
    """``parameters`` of ``for p in model.parameters()`` (also inside ``list(...)``)."""
    source = loop.iter
    while isinstance(source, cst.Call) and isinstance(source.func, cst.Name) and source.func.value in ("list", "tuple") and source.args:
        source = source.args[0].value
    if isinstance(source, cst.Call) and isinstance(source.func, cst.Attribute):
        return source.func.attr.value
    return None


def _iterated_owner(loop: cst.For) -> cst.BaseExpression | None:
    source = loop.iter
    while isinstance(source, cst.Call) and isinstance(source.func, cst.Name) and source.func.value in ("list", "tuple") and source.args:
        source = source.args[0].value
    if isinstance(source, cst.Call) and isinstance(source.func, cst.Attribute):
        return source.func.value
    return None


def switches(module: ModuleModel, ev: Evaluator) -> Iterator[Switch]:
    """Effective switches written in ``module``, in source order."""
    found: list[Switch] = []
    for call in module.calls_by_name.get(SETTER, []):
        func = call.func
        flag = call_arg(call, 0, FLAG)
        value = True if flag is None else literal_value(flag)
        if isinstance(func, cst.Attribute) and isinstance(value, bool):
            loop = _iterating_loop(func.value, module)
            if loop is not None:
                found.extend(_loop_switch(loop, call, value, module))
            elif is_module(func.value, module, ev):
                found.append(Switch(call, func.value, value, True))
    for assign, attribute in flag_assignments(module):
        value = literal_value(assign.value)
        loop = _iterating_loop(attribute.value, module)
        if attribute.attr.value == FLAG and isinstance(value, bool) and loop is not None:
            found.extend(_loop_switch(loop, assign, value, module))
    yield from sorted(found, key=lambda s: module.order_of(s.node, 0))


def _loop_switch(loop: cst.For, node: cst.CSTNode, value: bool, module: ModuleModel) -> Iterator[Switch]:
    owner = _iterated_owner(loop)
    if owner is None or _iterated_method(loop) not in PARAMETER_ITERATORS:
        return
    # Blanket: the switch is a statement of the loop body itself, under no condition.
    line = next((a for a in module.ancestors(node) if isinstance(a, (cst.SimpleStatementLine, cst.SimpleStatementSuite))), None)
    blanket = line is not None and (module.parent_of(line) is loop.body or line is loop.body)
    yield Switch(loop, owner, value, blanket)


def covers(outer: cst.BaseExpression, inner: cst.BaseExpression) -> bool:
    """``model`` covers ``model`` and ``model.backbone`` (same spelling, or a prefix)."""
    a, b = dotted(outer), dotted(inner)
    return a is not None and b is not None and (a == b or b.startswith(a + "."))
