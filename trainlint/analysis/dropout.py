"""Dropout that must follow the module's mode, and whether it does.

``nn.Dropout`` reads ``self.training`` by itself. Everything else that drops activations
does not: ``F.dropout`` (its ``training`` flag defaults to True), ``torch.dropout(x, p,
train)``, attention kernels with a ``dropout_p`` argument (``F.scaled_dot_product_attention``,
flash-attn) and hand-written dropout modules that draw a random mask. Each is right only
when the code switches it off outside training: a ``training=`` flag, a rate written
``p if self.training else 0.0``, or an ``if self.training:`` around the call. This is the one
place that decides it (TL404 asks about the functional forms, TL606 about the others).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import torch as T
from trainlint.analysis.models import is_model_class
from trainlint.analysis.module import Binding, ModuleModel
from trainlint.analysis.names import terminal_name
from trainlint.analysis.values import ClassRef, Evaluator, Instance, call_arg, literal_value
from trainlint.analysis.walk import iter_children

Form = Literal["functional", "torch", "rate"]
# Classes named as dropout variants: ``WordDropout``, ``DropPath``, ``DropBlock2d``.
DROPOUT_CLASS = re.compile(r"drop|stochasticdepth", re.IGNORECASE)
MAX_DEPTH = 3


@dataclass(frozen=True)
class DropoutCall:
    """A library call that drops activations. ``flag`` is its training switch
    (``training=``/``train=``), ``rate`` its drop probability."""

    call: cst.Call
    qualname: str
    form: Form
    rate: cst.BaseExpression | None
    flag: cst.BaseExpression | None


def dropout_calls(module: ModuleModel, ev: Evaluator, forms: tuple[Form, ...]) -> Iterator[DropoutCall]:
    """Calls of library dropouts of the given forms written in ``module``."""
    names = {q.rsplit(".", 1)[1] for form in forms for q in _qualnames(form)}
    for name in sorted(names):
        for call in module.calls_by_name.get(name, []):
            found = _classify(call, module, ev, forms)
            if found is not None:
                yield found


def _qualnames(form: Form) -> frozenset[str]:
    if form == "functional":
        return T.FUNCTIONAL_DROPOUTS
    if form == "torch":
        return T.TORCH_DROPOUTS
    return frozenset(brains.DROPOUT_RATE_ARGUMENTS)


def _classify(call: cst.Call, module: ModuleModel, ev: Evaluator, forms: tuple[Form, ...]) -> DropoutCall | None:
    callee = ev.callee(call, module)
    if "functional" in forms and callee & T.FUNCTIONAL_DROPOUTS:
        qualname = min(callee & T.FUNCTIONAL_DROPOUTS)
        return DropoutCall(call, qualname, "functional", call_arg(call, 1, "p"), call_arg(call, 2, "training"))
    if "torch" in forms and callee & T.TORCH_DROPOUTS:
        qualname = min(callee & T.TORCH_DROPOUTS)
        return DropoutCall(call, qualname, "torch", call_arg(call, 1, "p"), call_arg(call, 2, "train"))
    rated = callee & set(brains.DROPOUT_RATE_ARGUMENTS)
    if "rate" in forms and rated:
        qualname = min(rated)
        keyword, position = brains.DROPOUT_RATE_ARGUMENTS[qualname]
        switch = T.TRAINING_FLAG_POSITION.get(qualname)
        flag = call_arg(call, switch, "training") if switch is not None else None
        return DropoutCall(call, qualname, "rate", call_arg(call, position, keyword), flag)
    return None


def ignores_mode(dropout: DropoutCall, module: ModuleModel, ev: Evaluator) -> bool:
    """The call drops activations in eval mode too: inside a module's method, with no
    training switch, a rate that is not certainly 0 and not written in terms of
    ``training``, and no ``if self.training`` around it."""
    if not in_module_method(dropout.call, module):
        return False
    flag = dropout.flag
    if dropout.form == "torch":
        # ``train`` is a required argument: only a literal True ignores the mode.
        if flag is None or literal_value(flag) is not True:
            return False
    elif flag is not None and literal_value(flag) is not True:
        return False
    if dropout.form == "rate" and dropout.rate is None:
        return False  # the kernel's default rate is 0
    return not _rate_switched_off(dropout.rate, module, ev) and not under_training_test(dropout.call, module)


def _rate_switched_off(rate: cst.BaseExpression | None, module: ModuleModel, ev: Evaluator) -> bool:
    """The rate is 0, depends on ``training`` (``p if self.training else 0.0``, also
    through a variable), or is a parameter the caller chooses."""
    if rate is None:
        return False
    if certainly_zero(rate, module, ev) or mentions_training(rate):
        return True
    return _name_switched_off(rate, module, ev, 0)


def _name_switched_off(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int) -> bool:
    if not isinstance(expr, cst.Name) or depth > MAX_DEPTH:
        return False
    for binding in ev.reaching(expr, module):
        if binding.kind == "param" and _caller_switches_off(binding, module, ev, depth):
            return True
        value = binding.value
        if value is None:
            continue
        if mentions_training(value) or under_training_test(binding.node, module):
            return True
        if certainly_zero(value, module, ev) or _name_switched_off(value, module, ev, depth + 1):
            return True
    return False


def _caller_switches_off(binding: Binding, module: ModuleModel, ev: Evaluator, depth: int) -> bool:
    """``def attend(self, q, k, v, dropout_p)``: the rate is the caller's choice. Switched
    off when some visible call passes a switched-off rate, and unknown (so trusted) when no
    call is visible."""
    function = binding.scope_node
    if not isinstance(function, cst.FunctionDef):
        return False
    params = [p.name.value for p in (*function.params.posonly_params, *function.params.params)]
    if module.method_class(function) is not None:
        params = params[1:]
    position = params.index(binding.name) if binding.name in params else None
    sites = ev.call_sites(function, module)
    if not sites:
        return True
    for call, caller in sites:
        argument = call_arg(call, position, binding.name)
        if argument is None:
            default = binding.value
            if default is not None and literal_value(default) == 0:
                return True
        elif mentions_training(argument) or certainly_zero(argument, caller, ev) or _name_switched_off(argument, caller, ev, depth + 1):
            return True
    return False


def certainly_zero(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int = 0) -> bool:
    """The rate is 0 on every path: a literal 0, or a local name or ``self`` attribute only
    ever set to 0. A parameter's default is no certainty (callers pass their own rate)."""
    if depth > MAX_DEPTH:
        return False
    value = literal_value(expr)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 0
    if isinstance(expr, cst.Name):
        bindings = ev.reaching(expr, module)
        return bool(bindings) and all(
            b.kind == "assign" and b.value is not None and not b.path and certainly_zero(b.value, module, ev, depth + 1) for b in bindings
        )
    if isinstance(expr, cst.Attribute) and isinstance(expr.value, cst.Name) and expr.value.value == "self":
        cls = module.method_class(module.enclosing_function(expr))
        if cls is None:
            return False
        assigned = list(ev.attribute_values(Instance(ClassRef(module, cls)), expr.attr.value))
        return bool(assigned) and all(not path and certainly_zero(value, owner, ev, depth + 1) for value, path, owner in assigned)
    return False


def under_training_test(node: cst.CSTNode, module: ModuleModel) -> bool:
    """``node`` runs only under a test of ``training`` (``if self.training:``, ``... if
    self.training else x``, ``if not self.training: return x`` before it)."""
    child: cst.CSTNode = node
    for ancestor in module.ancestors(node):
        if isinstance(ancestor, cst.FunctionDef):
            return False
        if isinstance(ancestor, (cst.If, cst.IfExp)) and mentions_training(ancestor.test):
            return True
        if isinstance(ancestor, cst.IndentedBlock) and _returned_before(ancestor, child):
            return True
        child = ancestor
    return False


def _returned_before(block: cst.IndentedBlock, child: cst.CSTNode) -> bool:
    """An earlier ``if not self.training ...: return x`` in the same block."""
    for statement in block.body:
        if statement is child:
            return False
        if isinstance(statement, cst.If) and mentions_training(statement.test) and _returns(statement.body):
            return True
    return False


def _returns(body: cst.BaseSuite) -> bool:
    lines = body.body if isinstance(body, cst.IndentedBlock) else [body]
    last = lines[-1] if lines else None
    if isinstance(last, cst.SimpleStatementLine):
        return isinstance(last.body[-1], cst.Return)
    if isinstance(last, cst.SimpleStatementSuite):
        return isinstance(last.body[-1], cst.Return)
    return False


def mentions_training(expr: cst.CSTNode) -> bool:
    """``self.training``, ``not self.training``, ``training`` (a parameter),
    ``self.training and self.p > 0``..."""
    pending: list[cst.CSTNode] = [expr]
    while pending:
        node = pending.pop()
        if isinstance(node, cst.Name) and node.value == "training":
            return True
        if isinstance(node, cst.Attribute) and node.attr.value == "training":
            return True
        pending.extend(iter_children(node))
    return False


def in_module_method(node: cst.CSTNode, module: ModuleModel) -> bool:
    """Inside a method of a class that derives from something (an ``nn.Module`` has
    ``self.training``; a plain helper class may want dropout on purpose)."""
    for ancestor in module.ancestors(node):
        if isinstance(ancestor, cst.FunctionDef):
            cls = module.method_class(ancestor)
            if cls is not None:
                return bool(cls.bases)
    return False


def mode_blind_masks(module: ModuleModel, ev: Evaluator) -> Iterator[cst.Call]:
    """Random masks drawn by hand-written dropout modules (``class DropPath(nn.Module)``)
    that never look at ``training``: they drop in eval mode too."""
    for name, cls in module.classes.items():
        if not DROPOUT_CLASS.search(name) or mentions_training(cls.body) or not is_model_class(ClassRef(module, cls), ev):
            continue
        for function in module.functions:
            if module.method_class(function) is cls and function.name.value == "forward":
                yield from (
                    call for call in module.calls_by_function.get(function, []) if terminal_name(call.func) in T.RANDOM_MASK_NAMES
                )
