"""Terms of a backpropagated loss that carry no gradient.

A loss is a sum of terms (``ce + lam * reg``, also built up with ``loss += term``). A term
contributes gradient only if it is still attached to the autograd graph. This module splits
a loss into its additive terms, following local names, and tells which terms were cut from
the graph on purpose-looking ways that are in fact bugs: ``.item()``, ``.detach()``,
``.data``, ``float(t)``, a new tensor built by ``torch.tensor(...)``. A term is cut when one
of its parts is cut and no other part may carry a graph: ``0.1 * reg.item()`` is cut,
``ce * w.detach()`` (a weight) is not. Calls are not entered: ``mse(pred, target.detach())``
detaches a stop-gradient target, which is right.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from trainlint.analysis.brains import torch as T
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted, root_name, terminal_name
from trainlint.analysis.state import Total
from trainlint.analysis.tensors import DETACHING_FUNCTIONS, DETACHING_METHODS, NOT_OUTPUTS, graph_part
from trainlint.analysis.values import Evaluator, call_arg, literal_value, unpacked

MAX_DEPTH = 4
# Library functions that turn numbers into numbers: ``math.sqrt(x.item())`` stays cut.
NUMERIC_ROOTS = ("math.", "numpy.", "np.")


@dataclass(frozen=True)
class Cut:
    """``term`` of a loss carries no gradient because ``by`` cut it from the graph."""

    term: cst.BaseExpression
    by: cst.BaseExpression


def loss_terms(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> Iterator[cst.BaseExpression]:
    """The additive terms of ``expr``, following local names (``loss = a + b``,
    ``loss += c``) and looking through scaling by a factor without a graph."""
    yield from _terms(expr, module, ev, 0, set())


def _terms(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int, seen: set[int]) -> Iterator[cst.BaseExpression]:
    if depth > MAX_DEPTH or id(expr) in seen:
        return
    seen.add(id(expr))
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.Add, cst.Subtract)):
        yield from _terms(expr.left, module, ev, depth, seen)
        yield from _terms(expr.right, module, ev, depth, seen)
        return
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        yield from _terms(expr.expression, module, ev, depth, seen)
        return
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.Multiply, cst.Divide)):
        scaled = _scaled(expr, module, ev)
        if scaled is not None:
            yield from _terms(scaled, module, ev, depth, seen)
            return
    if isinstance(expr, cst.Name):
        sources = _sources(expr, module, ev)
        if sources and (len(sources) > 1 or _composite(sources[0]) or isinstance(sources[0], cst.Name)):
            for source in sources:
                yield from _terms(source, module, ev, depth + 1, seen)
            return
    yield expr


def _composite(value: cst.BaseExpression | None) -> bool:
    """A sum or a scaled value: its terms are followed; anything else is one term, named
    as the loss names it."""
    return isinstance(value, cst.BinaryOperation) or (isinstance(value, cst.UnaryOperation) and isinstance(value.operator, cst.Minus))


def _scaled(expr: cst.BinaryOperation, module: ModuleModel, ev: Evaluator) -> cst.BaseExpression | None:
    """``loss`` of ``loss / accumulation_steps`` or ``0.5 * loss``: the side that carries a
    graph, when the other side is not known to."""
    left_live = _live(expr.left, module, ev)
    right_live = _live(expr.right, module, ev)
    if left_live and not right_live:
        return expr.left
    if right_live and not left_live and isinstance(expr.operator, cst.Multiply):
        return expr.right
    return None


def _live(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int = 0) -> bool:
    """Known to carry an autograd graph (a loss, a model output's loss, a name that is
    backpropagated or holds one)."""
    return cut_by(expr, module, ev, depth + 1) is None and graph_part(expr, module, ev, _unknown) is not None


def _divisor(expr: cst.BinaryOperation, module: ModuleModel, ev: Evaluator) -> bool:
    """``loss / n``: a divisor is a count or a normaliser unless it is known to be a loss."""
    return isinstance(expr.operator, cst.Divide) and graph_part(expr.right, module, ev, _unknown) is None


def _sources(name: cst.Name, module: ModuleModel, ev: Evaluator) -> list[cst.BaseExpression]:
    """What a local name's value is made of where it is used: the values assigned to it
    (``x, y = a, b`` unpacked), and for ``loss += term`` both ``term`` and the earlier
    ``loss`` (``loss *= w`` scales the earlier value). Empty when any binding is unknown (a
    parameter, a loop variable, an unpacked call)."""
    found: list[cst.BaseExpression] = []
    for binding in ev.reaching(name, module):
        node = binding.node
        if binding.kind == "assign" and binding.value is not None:
            value = unpacked(binding.value, binding.path)
            if value is None:
                return []
            found.append(value)
        elif binding.kind == "aug" and isinstance(node, cst.AugAssign) and isinstance(node.target, cst.Name):
            if isinstance(node.operator, (cst.AddAssign, cst.SubtractAssign)):
                found.append(node.value)
            found.append(node.target)
        else:
            return []
    return found


def cut_by(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int = 0) -> cst.BaseExpression | None:
    """The operation that cut ``expr`` from the autograd graph (``.item()``, ``.detach()``,
    ``.data``, ``float(t)``, ``torch.tensor(...)``), when every part of ``expr`` that is not
    a plain number was cut; else ``None``."""
    if depth > MAX_DEPTH:
        return None
    direct = _cutting(expr, module, ev)
    if direct is not None:
        return direct
    if isinstance(expr, cst.UnaryOperation):
        return cut_by(expr.expression, module, ev, depth + 1)
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.Add, cst.Subtract)):
        return _all_cut([expr.left, expr.right], module, ev, depth)
    if isinstance(expr, cst.BinaryOperation):
        # A product or quotient is cut when a factor is cut and the others are settings:
        # ``lam * reg.item()``, not ``ce * w.detach()`` nor ``criterion(out, y) * w.item()``.
        parts = [expr.left] if _divisor(expr, module, ev) else [expr.left, expr.right]
        cuts = [cut_by(part, module, ev, depth + 1) for part in parts]
        if all(c is not None or _setting(p, module, ev, depth) for c, p in zip(cuts, parts)):
            return next((c for c in cuts if c is not None), None)
        return None
    if isinstance(expr, cst.Call):
        if terminal_name(expr.func) == "sum" and isinstance(expr.func, cst.Name) and expr.args:
            return _element_cut(expr.args[0].value, module, ev, depth)
        if any(q.startswith(NUMERIC_ROOTS) for q in ev.callee(expr, module)) and expr.args:
            return _all_cut([a.value for a in expr.args], module, ev, depth)
        return None
    if isinstance(expr, cst.Name):
        sources = _sources(expr, module, ev)
        if not sources or _changed_in_place(expr, module):
            return None
        return _all_cut(sources, module, ev, depth)
    return None


def _all_cut(parts: list[cst.BaseExpression], module: ModuleModel, ev: Evaluator, depth: int) -> cst.BaseExpression | None:
    """The first cut among ``parts`` when each part is cut or a plain number."""
    found: cst.BaseExpression | None = None
    for part in parts:
        if _constant(part, module, ev):
            continue
        cut = cut_by(part, module, ev, depth + 1)
        if cut is None:
            return None
        found = found or cut
    return found


def _setting(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int) -> bool:
    """A hyper-parameter rather than a tensor: a number, ``args.lam`` / ``self.alpha``, or a
    name that is a parameter, a global or set only to such values."""
    if depth > MAX_DEPTH:
        return False
    if _constant(expr, module, ev) or isinstance(expr, cst.Attribute) and root_name(expr) in NOT_OUTPUTS and dotted(expr) is not None:
        return True
    if isinstance(expr, cst.UnaryOperation):
        return _setting(expr.expression, module, ev, depth + 1)
    if not isinstance(expr, cst.Name):
        return False
    return all(
        b.kind == "param" or b.kind == "assign" and b.value is not None and not b.path and _setting(b.value, module, ev, depth + 1)
        for b in ev.reaching(expr, module)
    )


def _constant(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    """A plain number, or a name only ever set to plain numbers (``l2 = 0``)."""
    if isinstance(literal_value(expr), (int, float)):
        return True
    if not isinstance(expr, cst.Name):
        return False
    bindings = ev.reaching(expr, module)
    return bool(bindings) and all(b.kind == "assign" and b.value is not None and isinstance(literal_value(b.value), (int, float)) for b in bindings)


def _element_cut(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int) -> cst.BaseExpression | None:
    """``sum(p.norm().item() for p in ...)`` / ``sum([a.item(), b.item()])``."""
    if isinstance(expr, (cst.GeneratorExp, cst.ListComp)):
        return cut_by(expr.elt, module, ev, depth + 1)
    if isinstance(expr, (cst.List, cst.Tuple)) and expr.elements:
        return _all_cut([e.value for e in expr.elements], module, ev, depth)
    return None


def _cutting(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> cst.BaseExpression | None:
    """``expr`` itself is a cutting operation: returns it."""
    if isinstance(expr, cst.Attribute) and expr.attr.value == "data":
        return expr
    if not isinstance(expr, cst.Call):
        return None
    func = expr.func
    if isinstance(func, cst.Attribute) and func.attr.value in DETACHING_METHODS:
        return expr
    if isinstance(func, cst.Attribute) and _cutting(func.value, module, ev) is not None:
        return _cutting(func.value, module, ev)  # ``x.detach().cpu()``
    if isinstance(func, cst.Name) and func.value in DETACHING_FUNCTIONS and expr.args:
        # ``float(x)`` cuts only a tensor with a history (``float(args.lam)`` is a setting).
        inner = expr.args[0].value
        return expr if graph_part(inner, module, ev, _unknown) is not None else None
    if ev.callee(expr, module) & T.NEW_TENSOR_FUNCTIONS:
        data = call_arg(expr, 0, "data")
        return expr if data is not None and not isinstance(literal_value(data), (int, float, bool)) else None
    return None


def _unknown(name: str) -> frozenset[Total]:
    return frozenset()


def _changed_in_place(name: cst.Name, module: ModuleModel) -> bool:
    """``reg.add_(p.norm())``: an in-place update may attach the tensor to a graph."""
    updated = module.cached("updated_in_place", lambda: _updated_in_place(module))
    return name.value in updated.get(module.enclosing_function(name), frozenset())


def _updated_in_place(module: ModuleModel) -> dict[cst.FunctionDef | None, frozenset[str]]:
    """Per function: the names an in-place method (``x.add_(...)``) is called on."""
    found: dict[cst.FunctionDef | None, set[str]] = {}
    for function, calls in module.calls_by_function.items():
        for call in calls:
            func = call.func
            if isinstance(func, cst.Attribute) and func.attr.value.endswith("_") and isinstance(func.value, cst.Name):
                found.setdefault(function, set()).add(func.value.value)
    return {function: frozenset(names) for function, names in found.items()}
