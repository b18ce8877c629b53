"""TL210: ``out, h = gru(x, h)`` → ``out, h = gru(x, h.detach())``.

Offered where the state is evidently tensors: each name of a tuple argument (``lstm(x,
(h, c))``), or a name passed to a single-state layer (``nn.GRU``, ``nn.RNN`` and their
cells). Unsafe: gradients no longer flow from this batch into earlier ones, which is the
point (truncated backpropagation through time) but changes the gradients of code that
meant to backpropagate through the whole stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import libcst as cst

from trainlint.analysis.brains import torch as T
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.values import Evaluator, Obj
from trainlint.fixes import Edit, Fixer, FixSafety


class RecurrentStateFixer(Fixer):
    code = "TL210"
    safety = FixSafety.UNSAFE

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        assign = model.parent_of(node)
        if not isinstance(node, cst.Call) or not isinstance(assign, cst.Assign):
            return []
        assigned = {name.value for target in assign.targets for name in _names(target.target)}
        single = any(isinstance(v, Obj) and v.qualname in T.SINGLE_STATE_RNNS for v in evaluator.eval(node.func, model))
        edits = []
        for arg in node.args:
            value = arg.value
            if isinstance(value, cst.Tuple):
                edits += [Edit(e.value, _detached(e.value)) for e in value.elements if isinstance(e.value, cst.Name) and e.value.value in assigned]
            elif single and isinstance(value, cst.Name) and value.value in assigned:
                edits.append(Edit(value, _detached(value)))
        return edits


def _detached(name: cst.Name) -> cst.Call:
    return cst.Call(func=cst.Attribute(value=name, attr=cst.Name("detach")))


def _names(target: cst.BaseExpression) -> Iterator[cst.Name]:
    if isinstance(target, cst.Name):
        yield target
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from _names(element.value)
