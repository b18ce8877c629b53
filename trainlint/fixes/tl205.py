"""TL205: ``total += loss`` → ``total += loss.item()``.

Safe: the running total becomes a Python number with the same value; only the autograd
graph it used to keep alive is released.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.values import Evaluator
from trainlint.fixes import Edit, Fixer, FixSafety, parenthesized


class LossAccumulatedAsTensorFixer(Fixer):
    code = "TL205"
    safety = FixSafety.SAFE

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        added = _added_value(node)
        if added is None:
            return []
        item = cst.Call(func=cst.Attribute(value=parenthesized(added), attr=cst.Name("item")))
        return [Edit(added, item)]


def _added_value(statement: cst.CSTNode) -> cst.BaseExpression | None:
    """``x`` in ``total += x`` and in ``total = total + x``: the rule reports both forms."""
    if isinstance(statement, cst.AugAssign):
        return statement.value
    if isinstance(statement, cst.Assign) and isinstance(statement.value, cst.BinaryOperation):
        return statement.value.right
    return None
