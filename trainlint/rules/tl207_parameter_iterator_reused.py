from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.engine import Occurrence
from trainlint.analysis.ir import Op, OpKind
from trainlint.analysis.keys import home
from trainlint.analysis.lifetimes import one_shot
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.training import call_text, earliest
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety
from trainlint.rule import Context, Report, Rule


class ParameterIteratorReused(Rule):
    code = "TL207"
    name = "parameter-iterator-reused"
    severity = Severity.ERROR
    summary = "A one-shot iterator (model.parameters(), filter(...), a generator) bound to a name is consumed twice: the second use sees nothing."
    message = "this iterator was already consumed, so it yields nothing here"
    hint = "Materialise it once: `params = list(model.parameters())`."
    triggers = ("parameters()", "filter(", "map(", "zip(", " for ")
    # ``params = model.parameters()`` -> ``params = list(model.parameters())``. Safe where
    # offered: only when the name's first use is in the statement right after the binding
    # (``optimizer = SGD(params, ...)``), so the list holds exactly what the first consumer
    # used to get; later consumers now get the same items instead of nothing, which is the
    # bug. Not offered when the iterator is used in other ways (``next(params)``).
    fix_safety = FixSafety.SAFE

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.CONSUME):
            op = occurrence.op
            if op.module is not ctx.model or op.target is None or id(op.target) in reported:
                continue
            before = occurrence.state.iterators.get(home(occurrence.frame, op.name or ""))
            if not before or None in before:
                continue  # not tracked here, or fresh on some way here
            reported.add(id(op.target))
            yield Report(op.target, message=_message(occurrence, [first for first in before if first is not None]))

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        model = ctx.model
        if not isinstance(node, cst.Name):
            return None
        bindings = ctx.evaluator.reaching(node, model)
        if len(bindings) != 1 or bindings[0].kind != "assign" or bindings[0].path:
            return None
        binding = bindings[0]
        value = binding.value
        if value is None or not one_shot(value):
            return None
        uses = sorted(_uses(binding.scope_node, node.value, model, binding.node), key=lambda n: model.order_of(n, 0))
        following = _next_statement(binding.node, model)
        if not uses or following is None or not model.is_within(uses[0], following) or any(_stepped(use, model) for use in uses):
            return None
        return Fix([Edit(value, cst.Call(func=cst.Name("list"), args=[cst.Arg(value)]))])


def _message(occurrence: Occurrence, firsts: list[Op]) -> str:
    op = occurrence.op
    first = earliest(firsts)
    assert first is not None
    if first is op:
        where = "on the previous iteration of the loop"
    else:
        where = f"by `{_short(first)}` ({first.module.where(first.node)})"
    return (
        f"`{op.name}` is a one-shot iterator that was already consumed {where}: "
        f"here it yields nothing, so `{_short(op)}` gets no parameters"
    )


def _short(op: Op) -> str:
    """The consumer as written: ``clip_grad_norm_(...)``, ``for p in params``."""
    node = op.node
    if isinstance(node, cst.Call):
        return f"{call_text(node.func, op.module)}(...)"
    if isinstance(node, (cst.For, cst.CompFor)) and op.target is not None:
        return f"for ... in {call_text(op.target, op.module)}"
    return call_text(node, op.module)


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
