"""TL405: ``p.require_grad = False`` → ``p.requires_grad = False`` on a parameter;
``module.requires_grad = False`` (or misspelt) → ``module.requires_grad_(False)``.

Safe: offered only when the receiver is certainly a parameter (a loop variable over
``parameters()``, a ``.weight``/``.bias``, an ``nn.Parameter``: a leaf, whose flag can be
set) or a module, and when the file never reads the attribute that was being set (so
nothing depended on it). The flag then does what the line meant; nothing else changes.
An undone freeze is not rewritten: which layers should train is the author's choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from trainlint.analysis.freezing import FLAG, SETTER, is_module, is_parameter, is_read, misspelt
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.values import Evaluator
from trainlint.fixes import Edit, Fixer, FixSafety


class FreezeFixer(Fixer):
    code = "TL405"
    safety = FixSafety.SAFE

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        target = model.parent_of(node)
        assign = model.parent_of(target) if target is not None else None
        if not (isinstance(node, cst.Attribute) and isinstance(assign, cst.Assign) and len(assign.targets) == 1):
            return []
        attr = node.attr.value
        if attr != FLAG and (not misspelt(attr) or is_read(attr, model)):
            return []
        if is_module(node.value, model, evaluator):
            setter = cst.Call(cst.Attribute(node.value, cst.Name(SETTER)), [cst.Arg(assign.value)])
            return [Edit(assign, cst.Expr(setter, semicolon=assign.semicolon))]
        if attr != FLAG and is_parameter(node.value, model, evaluator):
            return [Edit(node.attr, cst.Name(FLAG))]
        return []
