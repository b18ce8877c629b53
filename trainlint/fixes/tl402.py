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
from trainlint.fixes import Edit, Fixer, FixSafety, name_uses

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
                return [Edit(func, func.with_changes(value=NEW)), Edit(statement, _import_fixed(statement, model))]
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


def _import_fixed(statement: cst.ImportFrom, model: ModuleModel) -> cst.ImportFrom:
    """The import naming ``AdamW``: instead of ``Adam`` when this call was its only use,
    else in addition to it (a linter would flag an unused import; a missing one breaks)."""
    assert isinstance(statement.names, Sequence)
    names = list(statement.names)
    if any(dotted(alias.name) == NEW for alias in names):
        return statement
    if name_uses(model.tree, OLD) == 2:  # the import itself and this call
        return statement.with_changes(
            names=[alias.with_changes(name=cst.Name(NEW)) if dotted(alias.name) == OLD else alias for alias in names]
        )
    last = names[-1]
    names[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    return statement.with_changes(names=[*names, cst.ImportAlias(name=cst.Name(NEW))])
