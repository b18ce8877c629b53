"""Where a loop's batches come from: the loader behind ``enumerate``/``tqdm``, ``iter`` and
``next``, ``cycle`` generators, ``accelerator.prepare`` and prefetcher objects."""

from __future__ import annotations

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import Kind, accelerate
from trainlint.analysis.ir import ITERATION_WRAPPERS, Loop, iterated, object_kind
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import terminal_name
from trainlint.analysis.values import ClassRef, Evaluator, Instance, Obj
from trainlint.analysis.walk import iter_children

MAX_DEPTH = 4
# Endless or restartable wrappers of a loader: ``cycle(loader)``.
REPEATERS = frozenset({"cycle", "repeat_loader", "infinite_loader"})
# Methods a prefetcher or iterator is advanced with, in a ``while`` loop.
NEXT_METHODS = frozenset({"next", "__next__"})
# Methods that make a project class iterate what it wraps.
ITERATION_METHODS = ("__iter__", "__next__", "next")


def data_sources(loop: Loop, ev: Evaluator) -> list[cst.BaseExpression]:
    """What a loop draws its batches from: the iterable of a ``for``, or what ``next(...)`` /
    ``prefetcher.next()`` reads inside a ``while``."""
    node, module = loop.node, loop.module
    if isinstance(node, cst.For):
        return [unwrapped(iterated(node), module, ev)]
    if not isinstance(node, cst.While):
        return []
    sources = [
        unwrapped(call.args[0].value, module, ev)
        for call in module.within(module.calls_by_name.get("next", []), node.body)
        if call.args and isinstance(call.func, cst.Name)
    ]
    for name in NEXT_METHODS:
        for call in module.within(module.calls_by_name.get(name, []), node):
            if isinstance(call.func, cst.Attribute) and not call.args:
                sources.append(unwrapped(call.func.value, module, ev))
    return sources


def is_loader(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    return any(isinstance(v, Obj) and brains.kind_of(v.qualname) is Kind.LOADER for v in ev.eval(expr, module))


def unwrapped(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int = 0) -> cst.BaseExpression:
    """A loader behind its wrappers: ``iter(loader)``, ``cycle(loader)``, ``pbar`` bound to
    ``tqdm(loader)``, ``Prefetcher(loader)``, a variable or ``self`` attribute bound to one."""
    if depth > MAX_DEPTH:
        return expr
    if isinstance(expr, cst.Name):
        bindings = [b for b in ev.reaching(expr, module) if b.kind == "assign" and not b.path and b.value is not None]
        if len(bindings) == 1 and isinstance(bindings[0].value, cst.Call):
            inner = unwrapped(bindings[0].value, module, ev, depth + 1)
            return inner if inner is not bindings[0].value else expr
        return expr
    if isinstance(expr, cst.Attribute) and isinstance(expr.value, cst.Name) and expr.value.value == "self":
        return _self_attribute(expr, module, ev, depth)
    if isinstance(expr, cst.Call) and expr.args and not is_loader(expr, module, ev) and _wraps_first_argument(expr, module, ev):
        return unwrapped(expr.args[0].value, module, ev, depth + 1)
    return expr


def _self_attribute(expr: cst.Attribute, module: ModuleModel, ev: Evaluator, depth: int) -> cst.BaseExpression:
    cls = module.method_class(module.enclosing_function(expr))
    if cls is None:
        return expr
    values = list(ev.attribute_values(Instance(ClassRef(module, cls)), expr.attr.value))
    if len(values) == 1 and not values[0][1] and isinstance(values[0][0], cst.Call) and values[0][2] is module:
        inner = unwrapped(values[0][0], module, ev, depth + 1)
        return inner if inner is not values[0][0] else expr
    return expr


def _wraps_first_argument(call: cst.Call, module: ModuleModel, ev: Evaluator) -> bool:
    """A call that hands back (an iterator over) its first argument."""
    if terminal_name(call.func) in ITERATION_WRAPPERS | REPEATERS:
        return True
    if _prepares(call, module, ev):
        return True
    values = ev.eval(call.func, module)
    if values and all(isinstance(v, ClassRef) and any(ev.method(v, m) for m in ITERATION_METHODS) for v in values):
        return True  # ``DataPrefetcher(loader)``
    callees = ev.functions_called(call, module)
    return bool(callees) and all(_yields_from_parameter(f.node) for f in callees)


def _prepares(call: cst.Call, module: ModuleModel, ev: Evaluator) -> bool:
    """``accelerator.prepare(loader)`` hands the loader back, wrapped."""
    func = call.func
    return (
        len(call.args) == 1
        and isinstance(func, cst.Attribute)
        and func.attr.value in accelerate.PREPARE_METHODS
        and object_kind(func.value, module, ev) is Kind.FRAMEWORK
    )


def _yields_from_parameter(function: cst.FunctionDef) -> bool:
    """A generator that re-yields what its first parameter iterates (``def cycle(dl):
    while True: for x in dl: yield x``)."""
    params = [*function.params.posonly_params, *function.params.params]
    if not params:
        return False
    first = params[0].name.value
    pending: list[cst.CSTNode] = [function.body]
    iterates, yields = False, False
    while pending:
        node = pending.pop()
        if isinstance(node, cst.For) and isinstance(node.iter, cst.Name) and node.iter.value == first:
            iterates = True
        elif isinstance(node, cst.Yield):
            yields = True
        elif isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
            continue
        pending.extend(iter_children(node))
    return iterates and yields
