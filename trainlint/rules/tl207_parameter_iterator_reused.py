from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.engine import Occurrence
from trainlint.analysis.ir import Op, OpKind
from trainlint.analysis.keys import home
from trainlint.analysis.training import call_text, earliest
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class ParameterIteratorReused(Rule):
    code = "TL207"
    name = "parameter-iterator-reused"
    severity = Severity.ERROR
    summary = "A one-shot iterator (model.parameters(), filter(...), a generator) bound to a name is consumed twice: the second use sees nothing."
    message = "this iterator was already consumed, so it yields nothing here"
    hint = "Materialise it once: `params = list(model.parameters())`."
    triggers = ("parameters()", "filter(", "map(", "zip(", " for ")

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
