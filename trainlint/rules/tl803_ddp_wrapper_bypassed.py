from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.brains import torch as T
from trainlint.analysis.engine import Engine, LoopFacts
from trainlint.analysis.ir import OpKind
from trainlint.analysis.models import is_model
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted, root_name
from trainlint.analysis.training import backpropagated_names, call_text, loop_at
from trainlint.analysis.values import Evaluator, FuncRef, Obj
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety
from trainlint.rule import Context, Report, Rule

MAX_DEPTH = 2


class DdpWrapperBypassed(Rule):
    code = "TL803"
    name = "ddp-wrapper-bypassed"
    severity = Severity.ERROR
    summary = "The training step calls ddp_model.module(...) (or a method of it) and backpropagates the result: DDP never all-reduces those gradients."
    message = "the model is called through `.module`, bypassing DistributedDataParallel in the training step"
    hint = "Call the DDP wrapper itself, `ddp_model(x)`; keep `.module` for saving, loading and evaluation."
    triggers = (".module",)
    # ``ddp_model.module(x)`` / ``ddp_model.module.forward(x)`` -> ``ddp_model(x)``. Unsafe:
    # the forward pass then goes through DistributedDataParallel, which all-reduces the
    # gradients (the point) but also broadcasts buffers from rank 0 and may need
    # ``find_unused_parameters``. Calls of other methods (``.module.loss(x)``) are left
    # alone: DDP only wraps ``forward``.
    fix_safety = FixSafety.UNSAFE

    def check(self, ctx: Context) -> Iterator[Report]:
        for call in ctx.model.calls:
            wrapper = _bypassed_wrapper(call, ctx.model, ctx.evaluator)
            if wrapper is not None and _trains(ctx.engine, call, ctx.model):
                yield Report(call, message=_message(call, wrapper, ctx.model))

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        if not isinstance(node, cst.Call) or not isinstance(node.func, cst.Attribute):
            return None
        func = node.func
        if func.attr.value == "forward" and isinstance(func.value, cst.Attribute):
            func = func.value
        return Fix([Edit(node.func, func.value)]) if func.attr.value == "module" else None


def _bypassed_wrapper(call: cst.Call, module: ModuleModel, ev: Evaluator) -> cst.BaseExpression | None:
    """``W`` in ``W.module(x)``, ``W.module.forward(x)``, ``W.module.loss(x)`` (a method that
    runs the model's layers), ``inner(x)`` with ``inner = W.module``, when ``W`` is a DDP
    or FSDP wrapper."""
    func = call.func
    wrapped: cst.BaseExpression | None = None
    if isinstance(func, cst.Attribute) and func.attr.value == "module":
        wrapped = func
    elif isinstance(func, cst.Attribute) and isinstance(func.value, cst.Attribute) and func.value.attr.value == "module":
        if func.attr.value == "forward" or any(_runs_layers(f, ev, 0) for f in ev.eval(func, module) if isinstance(f, FuncRef)):
            wrapped = func.value
    elif isinstance(func, cst.Name):
        bindings = ev.reaching(func, module)
        if len(bindings) == 1 and isinstance(bindings[0].value, cst.Attribute) and bindings[0].value.attr.value == "module" and not bindings[0].path:
            wrapped = bindings[0].value
    if wrapped is None:
        return None
    wrapper = wrapped.value  # type: ignore[attr-defined]
    return wrapper if _is_ddp(wrapper, module, ev) else None


def _is_ddp(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    if any(isinstance(v, Obj) and v.qualname in T.DDP_WRAPPERS for v in ev.eval(expr, module)):
        return True
    return "ddp" in (dotted(expr) or "").lower()


def _runs_layers(function: FuncRef, ev: Evaluator, depth: int) -> bool:
    """A method that runs the model: it calls ``self(...)``, ``self.forward(...)``, a
    submodule, or a method that does (``init_hidden`` does not)."""
    for call in function.module.calls_by_function.get(function.node, []):
        func = call.func
        if root_name(func) != "self":
            continue
        if dotted(func) in ("self", "self.forward") or is_model(func, function.module, ev):
            return True
        if depth < MAX_DEPTH and any(_runs_layers(f, ev, depth + 1) for f in ev.eval(func, function.module) if isinstance(f, FuncRef)):
            return True
    return False


def _trains(engine: Engine, call: cst.Call, module: ModuleModel) -> bool:
    """The call runs with gradients on in an iteration that backpropagates its result."""
    for snapshot in engine.snapshots(call, module):
        loop = loop_at(engine, snapshot)
        if loop is not None and "on" in snapshot.state.grad and _feeds_backward(engine, loop, call, module):
            return True
    return False


def _feeds_backward(engine: Engine, loop: LoopFacts, call: cst.Call, module: ModuleModel) -> bool:
    if not any(op.kind is OpKind.BACKWARD for op in engine.iteration_ops(loop)):
        return False
    statement = _statement(call, module)
    if isinstance(statement, cst.Return):
        return True  # a helper's output: the training step it returns to backpropagates it
    if isinstance(statement, cst.Expr):
        return any(isinstance(n, cst.Attribute) and n.attr.value == "backward" for n in module.ancestors(call))
    names = backpropagated_names(engine, loop)
    if isinstance(statement, cst.Assign):
        return any(n in names for t in statement.targets for n in _names(t.target))
    if isinstance(statement, (cst.AugAssign, cst.AnnAssign)):
        return any(n in names for n in _names(statement.target))
    return False


def _statement(node: cst.CSTNode, module: ModuleModel) -> cst.CSTNode | None:
    for ancestor in module.ancestors(node):
        if isinstance(ancestor, cst.BaseSmallStatement):
            return ancestor
    return None


def _names(target: cst.BaseExpression) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in _names(e.value)]
    return []


def _message(call: cst.Call, wrapper: cst.BaseExpression, module: ModuleModel) -> str:
    name = call_text(wrapper, module)
    return (
        f"`{call_text(call.func, module)}(...)` runs the model behind its DDP wrapper `{name}` and its result is "
        "backpropagated: DDP's hooks never see this forward pass, so the gradients it produces are not all-reduced "
        "across ranks and each replica trains on its own shard only (the replicas silently drift apart)"
    )
