"""TL211: ``losses.append(loss)`` → ``losses.append(loss.detach())``.

Safe: the container keeps a tensor with the same value, dtype and device (so
``torch.stack(losses)`` and ``.item()`` later work as before); only the autograd graph it
used to keep alive is released. The rule fires only where that container is never
backpropagated in the loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.values import DictV, Evaluator, SeqV
from trainlint.fixes import Edit, Fixer, FixSafety, parenthesized


class LossTensorKeptFixer(Fixer):
    code = "TL211"
    safety = FixSafety.SAFE

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        if not isinstance(node, cst.BaseExpression):
            return []
        if any(isinstance(v, (SeqV, DictV)) for v in evaluator.eval(node, model)):
            return []  # a dict or list holding the loss: detaching it is not evident
        return [Edit(node, cst.Call(func=cst.Attribute(value=parenthesized(node), attr=cst.Name("detach"))))]
