"""TL803: ``ddp_model.module(x)`` / ``ddp_model.module.forward(x)`` → ``ddp_model(x)``.

Unsafe: the forward pass now goes through DistributedDataParallel, which all-reduces the
gradients (the point) but also broadcasts buffers from rank 0 and may need
``find_unused_parameters``; review it. Calls of other methods (``.module.loss(x)``) are
left alone: DDP only wraps ``forward``.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.values import Evaluator
from trainlint.fixes import Edit, Fixer, FixSafety


class DdpWrapperFixer(Fixer):
    code = "TL803"
    safety = FixSafety.UNSAFE

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        if not isinstance(node, cst.Call) or not isinstance(node.func, cst.Attribute):
            return []
        func = node.func
        if func.attr.value == "forward" and isinstance(func.value, cst.Attribute):
            func = func.value
        if func.attr.value != "module":
            return []
        return [Edit(node.func, func.value)]
