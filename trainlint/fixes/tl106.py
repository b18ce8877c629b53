"""TL106: ``F.softmax(outputs, dim=0)`` → ``F.softmax(outputs, dim=1)``, with the class axis
that the code itself states (the output feeds cross-entropy: dim 1; its classes are picked
with ``argmax(d)``: dim d), also for the softmax a model's ``forward`` returns.

Unsafe: the shape is unchanged, but every probability changes, which is the point; a
softmax over the batch is occasionally deliberate (batch-level normalisation in clustering
objectives), and a reviewer should confirm which it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.engine import Engine
from trainlint.analysis.predictions import Softmax, batch_output, batched_calls, class_axis, returned_by_forward, softmax_calls
from trainlint.analysis.values import Evaluator, literal_value
from trainlint.fixes import Edit, Fixer, FixSafety, engine_for


class SoftmaxDimFixer(Fixer):
    code = "TL106"
    safety = FixSafety.UNSAFE

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        engine = engine_for(evaluator)
        for softmax in softmax_calls(model, evaluator):
            if softmax.call is not node or softmax.dim is None or literal_value(softmax.dim) != 0:
                continue
            output = batch_output(softmax.operand, model, engine)
            axis = class_axis(output, model, engine) if output is not None else _forward_axis(softmax, model, engine)
            if axis is None or softmax.dim_owner is not softmax.call:
                return []  # a shared ``nn.Softmax(dim=0)`` layer may serve other inputs
            value = cst.Integer(str(axis)) if axis >= 0 else cst.UnaryOperation(cst.Minus(), cst.Integer(str(-axis)))
            return [Edit(softmax.dim, value)]
        return []


def _forward_axis(softmax: Softmax, model: ModuleModel, engine: Engine) -> int | None:
    """The class axis of a softmax returned by ``forward``, as the model's callers use it."""
    cls = returned_by_forward(softmax, model, engine.ev)
    used = next(batched_calls(cls, model, engine), None) if cls is not None else None
    return used.axis if used is not None else None
