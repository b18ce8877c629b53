"""TL207: ``params = model.parameters()`` → ``params = list(model.parameters())``.

Safe where offered: only when the name's first use is in the statement right after the
binding (``optimizer = SGD(params, ...)``), so the list holds exactly what the first
consumer used to get; later consumers now get the same items instead of nothing, which is
the bug. Not offered when the iterator is used in other ways (``next(params)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from trainlint.analysis.lifetimes import one_shot
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.values import Evaluator
from trainlint.fixes import Edit, Fixer, FixSafety


class ParameterIteratorFixer(Fixer):
    code = "TL207"
    safety = FixSafety.SAFE

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        if not isinstance(node, cst.Name):
            return []
        bindings = evaluator.reaching(node, model)
        if len(bindings) != 1 or bindings[0].kind != "assign" or bindings[0].path:
            return []
        binding = bindings[0]
        value = binding.value
        if value is None or not one_shot(value):
            return []
        uses = sorted(_uses(binding.scope_node, node.value, model, binding.node), key=lambda n: model.order_of(n, 0))
        following = _next_statement(binding.node, model)
        if not uses or following is None or not model.is_within(uses[0], following) or any(_stepped(use, model) for use in uses):
            return []
        return [Edit(value, cst.Call(func=cst.Name("list"), args=[cst.Arg(value)]))]


def _uses(scope: cst.CSTNode, name: str, model: ModuleModel, binding: cst.CSTNode) -> list[cst.Name]:
    """Uses of ``name`` after its binding statement."""
    after = model.order_of(binding, 0)
    found = []
    pending: list[cst.CSTNode] = [scope]
    while pending:
        current = pending.pop()
        if isinstance(current, cst.Name) and current.value == name and model.order_of(current, 0) > after and not model.is_within(current, binding):
            found.append(current)
        pending.extend(current.children)
    return found


def _next_statement(statement: cst.CSTNode, model: ModuleModel) -> cst.CSTNode | None:
    line = model.parent_of(statement)
    block = model.parent_of(line) if line is not None else None
    if not isinstance(line, cst.SimpleStatementLine) or len(line.body) != 1 or not isinstance(block, (cst.IndentedBlock, cst.Module)):
        return None
    statements = list(block.body)
    index = next((i for i, s in enumerate(statements) if s is line), None)
    return statements[index + 1] if index is not None and index + 1 < len(statements) else None


def _stepped(use: cst.Name, model: ModuleModel) -> bool:
    """``next(params)``: the iterator is advanced by hand, a list would not do."""
    parent = model.parent_of(use)
    call = model.parent_of(parent) if isinstance(parent, cst.Arg) else None
    return isinstance(parent, cst.Attribute) or (isinstance(call, cst.Call) and isinstance(call.func, cst.Name) and call.func.value == "next")
