"""TL505: ``torch.cuda.amp`` → ``torch.amp`` (safe: the new API with ``"cuda"`` first is the
same function; positional arguments become keywords because the signatures differ)."""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from trainlint.analysis.amp import DEPRECATED_AMP, DEPRECATED_MODULE, MODERN_MODULE, deprecated_import, modern_call, version_fallback
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.values import Evaluator
from trainlint.fixes import Edit, Fixer, FixSafety


class DeprecatedCudaAmpFixer(Fixer):
    code = "TL505"
    safety = FixSafety.SAFE

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        if isinstance(node, cst.ImportFrom):
            return _import_edits(node, model, evaluator)
        if not isinstance(node, cst.Call):
            return []
        if isinstance(node.func, cst.Name):
            # A bare ``autocast()`` is rewritten together with the import that binds it.
            statement = _importing(node.func.value, model)
            return _import_edits(statement, model, evaluator) if statement is not None else []
        edit = _call_edit(node, model, evaluator)
        return [edit] if edit is not None else []


def _importing(name: str, model: ModuleModel) -> cst.ImportFrom | None:
    for binding in model.module_scope.bindings.get(name, []):
        if isinstance(binding.node, cst.ImportFrom) and deprecated_import(binding.node):
            return binding.node
    return None


def _call_edit(call: cst.Call, model: ModuleModel, evaluator: Evaluator) -> Edit | None:
    for qualname in sorted(evaluator.callee(call, model) & DEPRECATED_AMP.keys()):
        # ``amp.autocast()`` after ``from torch.cuda import amp`` would need a new import.
        if isinstance(call.func, cst.Attribute) and ".cuda.amp." not in model.tree.code_for_node(call.func):
            return None
        modern = modern_call(call, qualname, model)
        return Edit(call, cst.parse_expression(modern)) if modern is not None else None
    return None


def _import_edits(statement: cst.ImportFrom, model: ModuleModel, evaluator: Evaluator) -> list[Edit]:
    """The import and, in the same change, every call through the names it binds: the
    import alone would leave ``autocast()`` without its device argument."""
    if not deprecated_import(statement) or not isinstance(statement.names, Sequence) or version_fallback(statement, model):
        return []
    names = {alias.name.value for alias in statement.names if isinstance(alias.name, cst.Name)}
    if any(f"{DEPRECATED_MODULE}.{name}" not in DEPRECATED_AMP for name in names):
        return []  # e.g. custom_fwd, whose torch.amp counterpart has another signature
    edits = [Edit(statement, statement.with_changes(module=cst.parse_expression(MODERN_MODULE)))]
    for call in model.calls:
        if isinstance(call.func, cst.Name) and evaluator.callee(call, model) & DEPRECATED_AMP.keys():
            if version_fallback(call, model):
                return []  # old-torch code path: the deprecated API is the point there
            edit = _call_edit(call, model, evaluator)
            if edit is None:
                return []
            edits.append(edit)
    return edits
