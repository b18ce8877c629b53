"""TL304: ``plateau.step()`` → ``plateau.step(val_loss)``, only when the metric is evident.

Evident means: exactly one variable of the enclosing function (or module) is named like a
validation metric and is assigned before the call. Unsafe: the call no longer raises, and
whether that metric should be minimised is the scheduler's ``mode``, which we do not check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.values import Evaluator
from trainlint.fixes import Edit, Fixer, FixSafety

METRIC_NAME = re.compile(r"^(?:val|valid|validation|eval|dev)_?(?:loss|metric|score|acc|accuracy)$")


class PlateauMetricFixer(Fixer):
    code = "TL304"
    safety = FixSafety.UNSAFE

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        if not isinstance(node, cst.Call) or node.args:
            return []
        candidates = _metrics_before(node, model)
        if len(candidates) != 1:
            return []
        return [Edit(node, node.with_changes(args=[cst.Arg(cst.Name(candidates.pop()))]))]


def _metrics_before(call: cst.Call, model: ModuleModel) -> set[str]:
    scope = model.scope_of(call)
    position = model.order_of(call, 0)
    return {
        name
        for name, bindings in scope.bindings.items()
        if METRIC_NAME.match(name)
        and any(b.kind == "assign" and model.order_of(b.node, position) < position for b in bindings)
    }
