from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.freezing import (
    FLAG, SETTER, Switch, certainly_module, covers, flag_assignments, is_module, is_parameter, is_read, misspelt, reads,
    switches,
)
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted, root_name
from trainlint.analysis.optimizers import optimizer_calls
from trainlint.analysis.training import call_text
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety
from trainlint.rule import Context, Report, Rule

# Methods of a model that do not run it: calling them between a freeze and its undoing
# does not use the frozen state.
HOUSEKEEPING = frozenset(
    {"to", "cuda", "cpu", "float", "half", "double", "bfloat16", "train", "eval", "parameters", "named_parameters",
     "state_dict", "load_state_dict", "requires_grad_", "apply", "modules", "children", "named_modules",
     "named_children", "zero_grad", "register_buffer", "register_forward_hook", "add_module"}
)


class FreezeHasNoEffect(Rule):
    code = "TL405"
    name = "freeze-has-no-effect"
    severity = Severity.ERROR
    summary = "A freeze that freezes nothing: a misspelt requires_grad, requires_grad set on a Module, or undone before the optimizer."
    message = "this freeze has no effect: the parameters keep requires_grad=True and keep training"
    hint = "Freeze parameters with p.requires_grad = False, or every parameter of a module with module.requires_grad_(False)."
    triggers = ("grad",)
    # ``p.require_grad = False`` -> ``p.requires_grad = False`` on a parameter;
    # ``module.requires_grad = False`` (or misspelt) -> ``module.requires_grad_(False)``.
    # Safe: offered only when the receiver is certainly a parameter (a loop variable over
    # ``parameters()``, a ``.weight``/``.bias``, an ``nn.Parameter``: a leaf, whose flag can
    # be set) or a module, and when the file never reads the attribute that was being set
    # (so nothing depended on it). Unsafe when the value set may not be a bool (the flag and
    # ``requires_grad_`` then raise), or when the receiver is taken for a module by its name
    # only. An undone freeze is not rewritten: which layers should train is the author's
    # choice.
    fix_safety = FixSafety.SAFE

    def check(self, ctx: Context) -> Iterator[Report]:
        model, ev = ctx.model, ctx.evaluator
        for assign, attribute in flag_assignments(model):
            receiver = call_text(attribute.value, model)
            if misspelt(attribute.attr.value) and not is_read(attribute.attr.value, model):
                yield Report(
                    attribute,
                    message=(
                        f"`{receiver}.{attribute.attr.value}` is not `requires_grad`: this adds a new attribute and freezes "
                        "nothing, so these parameters keep training"
                    ),
                )
            elif attribute.attr.value == FLAG and is_module(attribute.value, model, ev) and not _own_flag(attribute, model):
                yield Report(
                    attribute,
                    message=(
                        f"`{receiver}` is a Module: setting `{receiver}.requires_grad` stores a plain attribute and leaves "
                        "every parameter's requires_grad unchanged, so the module keeps training"
                    ),
                    hint=f"Call {receiver}.requires_grad_({call_text(assign.value, model)}), which sets the flag of every parameter.",
                )
        yield from _undone_freezes(ctx)

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        model = ctx.model
        target = model.parent_of(node)
        assign = model.parent_of(target) if target is not None else None
        if not (isinstance(node, cst.Attribute) and isinstance(assign, cst.Assign) and len(assign.targets) == 1):
            return None
        attr = node.attr.value
        if attr != FLAG and (not misspelt(attr) or is_read(attr, model)):
            return None
        proven = _boolean(assign.value)
        if is_module(node.value, model, ctx.evaluator):
            setter = cst.Call(cst.Attribute(node.value, cst.Name(SETTER)), [cst.Arg(assign.value)])
            proven = proven and certainly_module(node.value, model, ctx.evaluator)
            return Fix([Edit(assign, cst.Expr(setter, semicolon=assign.semicolon))], None if proven else FixSafety.UNSAFE)
        if attr != FLAG and is_parameter(node.value, model, ctx.evaluator):
            return Fix([Edit(node.attr, cst.Name(FLAG))], None if proven else FixSafety.UNSAFE)
        return None


def _boolean(value: cst.BaseExpression) -> bool:
    """``True``, ``False``, ``not x``, ``a == b``: certainly a bool, as the flag requires."""
    if isinstance(value, cst.Name):
        return value.value in ("True", "False")
    return isinstance(value, cst.Comparison) or isinstance(value, cst.UnaryOperation) and isinstance(value.operator, cst.Not)


def _own_flag(attribute: cst.Attribute, model: ModuleModel) -> bool:
    """The receiver's ``requires_grad`` is read back (``if self.requires_grad:``): a
    project's own attribute or property of that name."""
    receiver = dotted(attribute.value)
    # ``self`` of one class is not ``self`` of another.
    cls = model.method_class(model.enclosing_function(attribute)) if root_name(attribute.value) == "self" else None
    return any(dotted(node.value) == receiver for node in reads(cls if cls is not None else model.tree, FLAG, model))


def _undone_freezes(ctx: Context) -> Iterator[Report]:
    """``requires_grad = True`` on every parameter of a model after a freeze of some of them,
    unconditionally, before the optimizer is built: the freeze is undone."""
    model = ctx.model
    found = list(switches(model, ctx.evaluator))
    optimizers = [o.call for o in optimizer_calls(model, ctx.evaluator)]
    for index, unfreeze in enumerate(found):
        if not (unfreeze.value and unfreeze.blanket):
            continue
        scope = model.enclosing_function(unfreeze.node)
        earlier = [s for s in found[:index] if not s.value and _same_scope(s, scope, model) and covers(unfreeze.owner, s.owner)]
        freeze = earlier[-1] if earlier else None
        if freeze is not None and not _unconditional_after(freeze, unfreeze, model):
            continue
        optimizer = next((o for o in optimizers if _after(o, unfreeze.node, model) and model.enclosing_function(o) is scope), None)
        if freeze is None or optimizer is None or (freeze.blanket and dotted(freeze.owner) == dotted(unfreeze.owner)):
            continue
        later = [s for s in found[index + 1 :] if not s.value and _same_scope(s, scope, model) and not _after(s.node, optimizer, model)]
        if later or _uses_frozen(freeze, unfreeze, model):
            continue
        yield Report(
            unfreeze.node,
            message=(
                f"this sets requires_grad=True on every parameter of `{call_text(unfreeze.owner, model)}` after the freeze on "
                f"line {model.line_of(freeze.node)} and before the optimizer is built on line {model.line_of(optimizer)}: "
                "the freeze is undone and the frozen layers train"
            ),
            hint="Unfreeze only the layers meant to train (e.g. the new head's parameters), or drop this loop.",
        )


def _unconditional_after(freeze: Switch, unfreeze: Switch, model: ModuleModel) -> bool:
    """Whenever the freeze ran, the unfreeze runs too: every branch or loop around the
    unfreeze also holds the freeze (``if __name__ == "__main__":`` holds both)."""
    return all(model.is_within(freeze.node, a) for a in model.conditional_ancestors(unfreeze.node))


def _same_scope(switch: Switch, scope: cst.FunctionDef | None, model: ModuleModel) -> bool:
    return model.enclosing_function(switch.node) is scope


def _after(node: cst.CSTNode, other: cst.CSTNode, model: ModuleModel) -> bool:
    return model.order_of(node, 0) > model.order_of(other, 0)


def _uses_frozen(freeze: Switch, unfreeze: Switch, model: ModuleModel) -> bool:
    """Something between the freeze and the unfreeze runs the model (a loop, or a call of
    the model that is not housekeeping): the freeze was meant for that window."""
    start, end = model.order_of(freeze.node, 0), model.order_of(unfreeze.node, 0)
    owner = root_name(unfreeze.owner)
    scope = model.enclosing_function(unfreeze.node)
    for call in model.calls_by_function.get(scope, []):
        order = model.order_of(call, 0)
        if not start < order < end or model.is_within(call, freeze.node):
            continue
        func = call.func
        if root_name(func) == owner and not (isinstance(func, cst.Attribute) and func.attr.value in HOUSEKEEPING):
            return True
    return any(start < model.order_of(loop, 0) < end and not model.is_within(loop, freeze.node) for loop in model.loops)
