"""TL105: ``outputs.argmax()`` → ``outputs.argmax(dim=1)``, with the class axis that the
code itself states (the output feeds cross-entropy: dim 1; its classes are picked elsewhere
with ``argmax(d)``: dim d).

Unsafe: the result becomes one index per sample instead of a single number, so code that
used it as a number changes too (the fix is not offered when the result is passed to
``.item()``, ``int()`` or ``float()``, which would then raise).
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.predictions import batch_output, class_axis, flat_argmax_operand, results_of
from trainlint.analysis.values import Evaluator
from trainlint.fixes import Edit, Fixer, FixSafety, engine_for

SCALAR_USES = frozenset({"item", "tolist"})
SCALAR_FUNCTIONS = frozenset({"int", "float"})


class ArgmaxDimFixer(Fixer):
    code = "TL105"
    safety = FixSafety.UNSAFE

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        if not isinstance(node, cst.Call):
            return []
        engine = engine_for(evaluator)
        operand = flat_argmax_operand(node, model, evaluator)
        output = batch_output(operand, model, engine) if operand is not None else None
        axis = class_axis(output, model, engine) if output is not None else None
        if axis is None or any(_scalar_use(use, model) for use in results_of(node, model, engine)):
            return []
        dim = cst.Arg(
            cst.Integer(str(axis)) if axis >= 0 else cst.UnaryOperation(cst.Minus(), cst.Integer(str(-axis))),
            keyword=cst.Name("dim"),
            equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")),
        )
        if isinstance(node.func, cst.Attribute) and node.func.value is operand:
            args = [dim, *node.args]  # ``keepdim=`` may follow
        else:
            args = [*node.args[:1], dim, *node.args[1:]]
        if len(args) > 1:
            args = [arg.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))) for arg in args[:-1]] + [args[-1]]
        return [Edit(node, node.with_changes(args=args))]


def _scalar_use(use: cst.BaseExpression, model: ModuleModel) -> bool:
    parent = model.parent_of(use)
    if isinstance(parent, cst.Attribute) and parent.attr.value in SCALAR_USES:
        return True
    call = model.parent_of(parent) if isinstance(parent, cst.Arg) else None
    return isinstance(call, cst.Call) and isinstance(call.func, cst.Name) and call.func.value in SCALAR_FUNCTIONS
