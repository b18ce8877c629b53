"""Values that differ from one process of a distributed job to the next: its rank (a rank
variable, ``dist.get_rank()``, ``os.environ["LOCAL_RANK"]``...) or something per-process
(the clock, the process id, a fresh random seed). Followed through arithmetic, local
names, and parameters bound at visible call sites."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import python as PY
from trainlint.analysis.brains import torch as T
from trainlint.analysis.module import Binding, ModuleModel
from trainlint.analysis.names import terminal_name
from trainlint.analysis.values import Evaluator, call_arg, literal_value

MAX_DEPTH = 5


@dataclass(frozen=True)
class Varying:
    """``node`` (in ``module``) makes a value differ between processes: by ``rank`` or by
    ``process`` (the clock, the pid)."""

    node: cst.BaseExpression
    module: ModuleModel
    kind: Literal["rank", "process"]


def per_process(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int = 0) -> Varying | None:
    """What makes ``expr`` differ between processes, if anything visibly does."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(expr, (cst.Name, cst.Attribute)) and brains.is_rank_name(terminal_name(expr)):
        return Varying(expr, module, "rank")
    if isinstance(expr, cst.BinaryOperation):
        return per_process(expr.left, module, ev, depth + 1) or per_process(expr.right, module, ev, depth + 1)
    if isinstance(expr, cst.UnaryOperation):
        return per_process(expr.expression, module, ev, depth + 1)
    if isinstance(expr, cst.Subscript):
        return _environment(expr, module, ev)
    if isinstance(expr, cst.Call):
        return _call(expr, module, ev, depth)
    if isinstance(expr, cst.Name):
        for binding in ev.reaching(expr, module):
            found = _binding(binding, module, ev, depth)
            if found is not None:
                return found
    return None


def _call(call: cst.Call, module: ModuleModel, ev: Evaluator, depth: int) -> Varying | None:
    callee = ev.callee(call, module)
    if callee & brains.RANK_FUNCTIONS or brains.is_rank_name(terminal_name(call.func)):
        return Varying(call, module, "rank")
    if callee & brains.PER_PROCESS_VALUES:
        return Varying(call, module, "process")
    if callee & PY.ENVIRONMENT_GETTERS:
        name = literal_value(call_arg(call, 0, "key") or cst.Name("None"))
        return Varying(call, module, "rank") if name in T.RANK_ENVIRONMENT else None
    if isinstance(call.func, cst.Name) and call.func.value in ("int", "float", "str", "hash", "abs") and call.args:
        return per_process(call.args[0].value, module, ev, depth + 1)
    return None


def _environment(expr: cst.Subscript, module: ModuleModel, ev: Evaluator) -> Varying | None:
    """``os.environ["LOCAL_RANK"]``."""
    if not any(getattr(v, "qualname", None) in PY.ENVIRONMENT for v in ev.eval(expr.value, module)):
        return None
    index = expr.slice[0].slice if len(expr.slice) == 1 else None
    key = literal_value(index.value) if isinstance(index, cst.Index) else None
    return Varying(expr, module, "rank") if key in T.RANK_ENVIRONMENT else None


def _binding(binding: Binding, module: ModuleModel, ev: Evaluator, depth: int) -> Varying | None:
    if binding.kind in ("assign", "aug") and binding.value is not None and not binding.path:
        return per_process(binding.value, module, ev, depth + 1)
    if binding.kind == "param" and isinstance(binding.scope_node, cst.FunctionDef):
        return _argument(binding, binding.scope_node, module, ev, depth)
    return None


def _argument(binding: Binding, function: cst.FunctionDef, module: ModuleModel, ev: Evaluator, depth: int) -> Varying | None:
    """The value passed for a parameter at a visible call site."""
    params = [p.name.value for p in (*function.params.posonly_params, *function.params.params)]
    if module.method_class(function) is not None:
        params = params[1:]
    position = params.index(binding.name) if binding.name in params else None
    for call, caller in ev.call_sites(function, module):
        argument = call_arg(call, position, binding.name)
        found = per_process(argument, caller, ev, depth + 1) if argument is not None else None
        if found is not None:
            return found
    return None
