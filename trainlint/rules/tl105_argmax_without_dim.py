from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.brains import torch as T
from trainlint.analysis.engine import Engine
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.predictions import (
    BatchOutput, batch_output, class_axis, flat_argmax_operand, is_batch_tensor, results_of,
)
from trainlint.analysis.training import call_text
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety, integer
from trainlint.rule import Context, Report, Rule

# Uses of an argmax result that need a single number: the fix would make them raise.
SCALAR_USES = frozenset({"item", "tolist"})
SCALAR_FUNCTIONS = frozenset({"int", "float"})


class ArgmaxWithoutDim(Rule):
    code = "TL105"
    name = "argmax-without-dim"
    severity = Severity.ERROR
    summary = "argmax() without dim on a batch of model outputs returns one index for the whole batch."
    message = "argmax() without dim flattens the [batch, classes] output and returns a single index"
    hint = "Pass the class axis: outputs.argmax(dim=1) (or dim=-1) gives one prediction per sample."
    triggers = ("argmax",)
    # Passes the class axis the code states (the output feeds cross-entropy: dim 1; its
    # classes are picked elsewhere with ``argmax(d)``: dim d). Unsafe: the result becomes one
    # index per sample instead of a single number, so code that used it as a number changes
    # too (no fix when it goes to ``.item()``, ``int()`` or ``float()``, which would raise).
    fix_safety = FixSafety.UNSAFE

    def check(self, ctx: Context) -> Iterator[Report]:
        model, engine = ctx.model, ctx.engine
        for call in model.calls_by_name.get(T.ARGMAX_METHOD, []):
            operand = flat_argmax_operand(call, model, ctx.evaluator)
            output = batch_output(operand, model, engine) if operand is not None else None
            if output is not None and _per_class(call, output, model, engine):
                yield Report(
                    call,
                    message=(
                        f"`{call_text(call, model)}` has no dim, so it returns one index into the flattened output of "
                        f"`{call_text(output.call, model)}` (a whole batch), not one class per sample: accuracy and "
                        "predictions computed from it are wrong"
                    ),
                )

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        if not isinstance(node, cst.Call):
            return None
        model, engine = ctx.model, ctx.engine
        operand = flat_argmax_operand(node, model, ctx.evaluator)
        output = batch_output(operand, model, engine) if operand is not None else None
        axis = class_axis(output, model, engine) if output is not None else None
        if axis is None or any(_scalar_use(use, model) for use in results_of(node, model, engine)):
            return None
        dim = cst.Arg(integer(axis), keyword=cst.Name("dim"), equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")))
        if isinstance(node.func, cst.Attribute) and node.func.value is operand:
            args = [dim, *node.args]  # ``keepdim=`` may follow
        else:
            args = [*node.args[:1], dim, *node.args[1:]]
        if len(args) > 1:
            args = [arg.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))) for arg in args[:-1]] + [args[-1]]
        return Fix([Edit(node, node.with_changes(args=args))])


def _scalar_use(use: cst.BaseExpression, model: ModuleModel) -> bool:
    parent = model.parent_of(use)
    if isinstance(parent, cst.Attribute) and parent.attr.value in SCALAR_USES:
        return True
    call = model.parent_of(parent) if isinstance(parent, cst.Arg) else None
    return isinstance(call, cst.Call) and isinstance(call.func, cst.Name) and call.func.value in SCALAR_FUNCTIONS


def _per_class(call: cst.Call, output: BatchOutput, model: ModuleModel, engine: Engine) -> bool:
    """The output holds per-sample class scores: a classification loss or a class pick says
    where its classes are, or the argmax is compared with the batch's labels."""
    if class_axis(output, model, engine) is not None:
        return True
    return any(is_batch_tensor(other, model, engine) for other in _compared_with(call, model, engine))


def _compared_with(call: cst.Call, model: ModuleModel, engine: Engine) -> Iterator[cst.BaseExpression]:
    """What the argmax result is compared with: ``pred == labels``, ``pred.eq(labels)``."""
    for result in results_of(call, model, engine):
        parent = model.parent_of(result)
        if isinstance(parent, cst.ComparisonTarget):
            comparison = model.parent_of(parent)
            if isinstance(comparison, cst.Comparison) and isinstance(parent.operator, (cst.Equal, cst.NotEqual)):
                yield comparison.left if comparison.left is not result else parent.comparator
        elif isinstance(parent, cst.Comparison) and parent.left is result:
            yield from (t.comparator for t in parent.comparisons if isinstance(t.operator, (cst.Equal, cst.NotEqual)))
        elif isinstance(parent, cst.Attribute) and parent.attr.value == "eq":
            eq = model.parent_of(parent)
            if isinstance(eq, cst.Call) and eq.args:
                yield eq.args[0].value
