"""TL402: ``torch.optim.Adam(..., weight_decay=x)`` → ``torch.optim.AdamW(...)``.

Unsafe: AdamW decouples the decay from the gradient, which is the point, but it changes the
effective regularisation, so a tuned ``weight_decay`` usually needs re-tuning.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted
from trainlint.analysis.values import Evaluator
from trainlint.fixes import Edit, Fixer, FixSafety

OLD, NEW = "Adam", "AdamW"
OPTIM_MODULES = frozenset({"torch.optim", "torch.optim.adam"})


class AdamToAdamWFixer(Fixer):
    code = "TL402"
    safety = FixSafety.UNSAFE

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        if not isinstance(node, cst.Call):
            return []
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value == OLD:
            return [Edit(func.attr, func.attr.with_changes(value=NEW))]
        if isinstance(func, cst.Name) and func.value == OLD:
            statement = _importing(model, OLD)
            if statement is not None:
                return [Edit(func, func.with_changes(value=NEW)), Edit(statement, _with_name(statement, NEW))]
        return []


def _importing(model: ModuleModel, name: str) -> cst.ImportFrom | None:
    """The ``from torch.optim import Adam`` that binds ``name`` without an alias."""
    for binding in model.module_scope.bindings.get(name, []):
        statement = binding.node
        if (
            isinstance(statement, cst.ImportFrom)
            and statement.module is not None
            and dotted(statement.module) in OPTIM_MODULES
            and isinstance(statement.names, Sequence)
            and any(alias.asname is None and dotted(alias.name) == name for alias in statement.names)
        ):
            return statement
    return None


def _with_name(statement: cst.ImportFrom, name: str) -> cst.ImportFrom:
    """The import with ``name`` added after the others (``Adam`` stays: it may be used elsewhere)."""
    assert isinstance(statement.names, Sequence)
    if any(dotted(alias.name) == name for alias in statement.names):
        return statement
    names = list(statement.names)
    last = names[-1]
    names[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    return statement.with_changes(names=[*names, cst.ImportAlias(name=cst.Name(name))])
