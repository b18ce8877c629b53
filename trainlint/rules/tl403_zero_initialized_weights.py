from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted
from trainlint.analysis.values import Evaluator, FuncRef, LibRef, call_arg
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule

ZERO_INITS = frozenset({"torch.nn.init.zeros_", "torch.nn.init.zeros"})
CONSTANT_INITS = frozenset({"torch.nn.init.constant_", "torch.nn.init.constant"})
MODULE_ITERATORS = frozenset({"modules", "named_modules", "children", "named_children"})
# Layers whose weights must differ from unit to unit for the units to learn different things.
WEIGHT_LAYER = re.compile(r"^(Lazy)?(Linear|Bilinear|Conv(Transpose)?[123]d|_ConvNd)$")
# ``classname.find('Conv') != -1`` (the DCGAN ``weights_init`` idiom).
WEIGHT_LAYER_TEXT = re.compile(r"^(Conv|Linear)")
INIT_FUNCTION = re.compile(r"^_?(init_weights?|weights?_init|_init_weights?)$")


@dataclass(frozen=True)
class InitScope:
    """Code that runs for every submodule of a network, ``var`` naming the submodule: the
    body of ``for m in net.modules()`` or a function given to ``net.apply``."""

    body: cst.CSTNode
    var: str


class ZeroInitializedWeights(Rule):
    code = "TL403"
    name = "zero-initialized-weights"
    severity = Severity.ERROR
    summary = "Every Linear/Conv weight of a network is initialized to zero: units stay identical."
    message = "every Linear/Conv weight starts at zero, so all units of a layer compute the same thing"
    hint = (
        "Initialize weights randomly (nn.init.kaiming_normal_, xavier_uniform_, normal_(0, 0.02)); zero only "
        "biases, norm gains or one chosen final/residual layer."
    )
    triggers = ("zeros_", "zero_(", "constant_", "fill_(0")

    def check(self, ctx: Context) -> Iterator[Report]:
        model, ev = ctx.model, ctx.evaluator
        for scope in _init_scopes(model, ev):
            for call in model.within(model.calls, scope.body):
                if _zeroes_weight_of(call, scope.var, model, ev):
                    if _applies_to_every_weight_layer(call, scope.body, model, ev):
                        written = _init_target(call)
                        assert written is not None, "_zeroes_weight_of found the target"
                        target = model.tree.code_for_node(written)
                        yield Report(
                            call,
                            message=(
                                f"{target} is set to zero for every Linear/Conv layer: all units of a layer get "
                                "identical outputs and gradients, so symmetry is never broken and the network "
                                "cannot learn distinct features"
                            ),
                        )


def _init_scopes(model: ModuleModel, ev: Evaluator) -> Iterator[InitScope]:
    for loop in model.loops:
        if isinstance(loop, cst.For):
            var = _module_loop_var(loop)
            if var is not None:
                yield InitScope(loop.body, var)
    applied = {id(f.node) for f in _applied_functions(model, ev)}
    for function in model.functions:
        named_init = INIT_FUNCTION.match(function.name.value) and model.method_class(function) is not None
        if id(function) in applied or named_init:
            var = _module_param(function, model)
            if var is not None:
                yield InitScope(function.body, var)


def _module_loop_var(loop: cst.For) -> str | None:
    """``m`` in ``for m in net.modules()`` / ``for name, m in net.named_modules()``."""
    it = loop.iter
    if not (isinstance(it, cst.Call) and isinstance(it.func, cst.Attribute) and _on_whole_network(it.func)):
        return None
    method = it.func.attr.value
    if method not in MODULE_ITERATORS:
        return None
    target = loop.target
    if method.startswith("named_"):
        if not (isinstance(target, (cst.Tuple, cst.List)) and len(target.elements) == 2):
            return None
        module = target.elements[1].value
        return module.value if isinstance(module, cst.Name) else None
    return target.value if isinstance(target, cst.Name) else None


def _applied_functions(model: ModuleModel, ev: Evaluator) -> Iterator[FuncRef]:
    """Functions of this file passed to ``net.apply(fn)``."""
    for call in model.calls_by_name.get("apply", []):
        fn = call_arg(call, 0, "fn")
        if fn is not None and isinstance(call.func, cst.Attribute) and _on_whole_network(call.func):
            yield from (v for v in ev.eval(fn, model) if isinstance(v, FuncRef) and v.module is model)


def _on_whole_network(func: cst.Attribute) -> bool:
    """``net.modules``/``self.apply``: a method of a plain name. ``self.head.apply(...)``
    initializes one chosen submodule, which may deliberately start at zero."""
    return isinstance(func.value, cst.Name)


def _module_param(function: cst.FunctionDef, model: ModuleModel) -> str | None:
    params = [*function.params.posonly_params, *function.params.params]
    if model.method_class(function) is not None:
        params = params[1:]
    return params[0].name.value if params else None


def _zeroes_weight_of(call: cst.Call, var: str, model: ModuleModel, ev: Evaluator) -> bool:
    """``nn.init.zeros_(m.weight)``, ``constant_(m.weight, 0)``, ``m.weight.data.zero_()``,
    ``m.weight.fill_(0)``."""
    target = _init_target(call)
    if target is None or not _is_weight_of(target, var):
        return False
    func = call.func
    if isinstance(func, cst.Attribute) and func.attr.value in ("zero_", "fill_"):
        return func.attr.value == "zero_" or _is_zero(call_arg(call, 0, "value"), model, ev)
    callee = ev.callee(call, model)
    if callee & ZERO_INITS:
        return True
    return bool(callee & CONSTANT_INITS) and _is_zero(call_arg(call, 1, "val"), model, ev)


def _init_target(call: cst.Call) -> cst.BaseExpression | None:
    """The tensor an init call writes: the receiver of ``.zero_()``/``.fill_()`` or the
    first argument of an ``nn.init`` function."""
    func = call.func
    if isinstance(func, cst.Attribute) and func.attr.value in ("zero_", "fill_"):
        return func.value
    return call_arg(call, 0, "tensor")


def _is_weight_of(target: cst.BaseExpression, var: str) -> bool:
    """``m.weight``, ``m.weight.data`` or ``m.weight.detach()``."""
    if isinstance(target, cst.Attribute) and target.attr.value == "data":
        target = target.value
    elif isinstance(target, cst.Call) and isinstance(target.func, cst.Attribute) and target.func.attr.value == "detach":
        target = target.func.value
    return dotted(target) == f"{var}.weight"


def _is_zero(expr: cst.BaseExpression | None, model: ModuleModel, ev: Evaluator) -> bool:
    return expr is not None and ev.number(expr, model) == 0


def _applies_to_every_weight_layer(call: cst.Call, scope: cst.CSTNode, model: ModuleModel, ev: Evaluator) -> bool:
    """No condition between the scope and the call selects a subset of the Linear/Conv
    layers: every ``if`` on the way tests for Linear/Conv layers or only checks that a
    weight exists; ``elif``/``else`` branches after an ``isinstance`` test are fine."""
    child: cst.CSTNode = call
    for ancestor in model.ancestors(call):
        if ancestor is scope:
            return True
        if isinstance(ancestor, cst.If):
            if child is ancestor.body and not _all_parts(ancestor.test, model, ev):
                return False
            if child is not ancestor.body and not _is_isinstance(ancestor.test):
                return False
        elif isinstance(ancestor, cst.IfExp):
            return False
        child = ancestor
    return False


def _all_parts(test: cst.BaseExpression, model: ModuleModel, ev: Evaluator) -> bool:
    """Every ``and``-operand is a Linear/Conv test or a weight-existence check."""
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And):
        return _all_parts(test.left, model, ev) and _all_parts(test.right, model, ev)
    return _tests_weight_layer(test, model, ev) or _checks_weight_exists(test)


def _is_isinstance(test: cst.BaseExpression) -> bool:
    return isinstance(test, cst.Call) and dotted(test.func) == "isinstance"


def _tests_weight_layer(test: cst.BaseExpression, model: ModuleModel, ev: Evaluator) -> bool:
    """``isinstance(m, (nn.Linear, nn.Conv2d))``, ``type(m) == nn.Linear`` or
    ``classname.find('Conv') != -1``."""
    if _is_isinstance(test) and isinstance(test, cst.Call) and len(test.args) == 2:
        kinds = test.args[1].value
        elements = [e.value for e in kinds.elements] if isinstance(kinds, cst.Tuple) else [kinds]
        return any(_is_weight_layer_class(e, model, ev) for e in elements)
    if isinstance(test, cst.Comparison):
        parts = [test.left, *(c.comparator for c in test.comparisons)]
        texts = [p.evaluated_value for p in _strings(parts)]
        if texts:
            return all(isinstance(t, str) and WEIGHT_LAYER_TEXT.match(t) for t in texts)
        return any(_is_weight_layer_class(p, model, ev) for p in parts)
    return False


def _strings(parts: list[cst.BaseExpression]) -> Iterator[cst.SimpleString]:
    """String literals in a comparison, including the argument of ``name.find('Conv')``."""
    for part in parts:
        if isinstance(part, cst.Call):
            yield from (a.value for a in part.args if isinstance(a.value, cst.SimpleString))
        elif isinstance(part, cst.SimpleString):
            yield part


def _is_weight_layer_class(expr: cst.BaseExpression, model: ModuleModel, ev: Evaluator) -> bool:
    """A torch Linear/Conv class; a user class that happens to be called ``Linear`` (LoRA's)
    does not count."""
    values = ev.eval(expr, model)
    if values:
        return any(
            isinstance(v, LibRef) and v.qualname.startswith("torch.nn.") and WEIGHT_LAYER.match(v.qualname.rsplit(".", 1)[-1])
            for v in values
        )
    name = dotted(expr)
    return name is not None and WEIGHT_LAYER.match(name.rsplit(".", 1)[-1]) is not None


def _checks_weight_exists(test: cst.BaseExpression) -> bool:
    """``m.weight is not None``, ``hasattr(m, 'weight')``, ``getattr(m, 'bias', None) is not None``."""
    if isinstance(test, cst.Comparison):
        test = test.left
    if isinstance(test, cst.Call) and dotted(test.func) in ("hasattr", "getattr") and len(test.args) >= 2:
        name = test.args[1].value
        return isinstance(name, cst.SimpleString) and name.evaluated_value in ("weight", "bias")
    return (dotted(test) or "").endswith((".weight", ".bias"))
