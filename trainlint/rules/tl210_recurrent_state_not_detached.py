from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.engine import Engine, Occurrence
from trainlint.analysis.ir import Flag, OpKind
from trainlint.analysis.keys import variable
from trainlint.analysis.training import call_text, innermost_loop
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class RecurrentStateNotDetached(Rule):
    code = "TL210"
    name = "recurrent-state-not-detached"
    severity = Severity.ERROR
    summary = "An RNN/LSTM hidden state is carried into the next batch without .detach(): backward() runs through every earlier batch."
    message = "the hidden state is fed into the next batch with its autograd graph"
    hint = "Detach the state between batches: `hidden = hidden.detach()` (for an LSTM, detach both h and c), or re-initialise it."
    triggers = ("backward",)

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.CARRY):
            op = occurrence.op
            if op.module is not ctx.model or not op.has(Flag.RECURRENT) or op.name is None or not isinstance(op.operand, cst.Call):
                continue
            if id(op.node) in reported or not _carried_with_graph(ctx.engine, occurrence):
                continue
            reported.add(id(op.node))
            yield Report(op.operand, message=_message(ctx.engine, occurrence))


def _carried_with_graph(engine: Engine, occurrence: Occurrence) -> bool:
    """On every path, the state fed in comes from an earlier iteration of a loop whose
    iterations backpropagate, with the graph that iteration built. The loop must be the
    function's own: a function called in a loop starts with fresh locals on every call."""
    op = occurrence.op
    if occurrence.frame is not occurrence.home:
        return False
    held = occurrence.state.totals.get(variable(occurrence.frame, op.name or ""), frozenset())
    if not held or not all(t.graph and t.carried for t in held):
        return False
    loop = innermost_loop(engine, occurrence)
    return loop is not None and any(o.kind is OpKind.BACKWARD for o in engine.iteration_ops(loop))


def _message(engine: Engine, occurrence: Occurrence) -> str:
    op = occurrence.op
    loop = innermost_loop(engine, occurrence)
    retained = loop is not None and any(o.kind is OpKind.BACKWARD and o.has(Flag.RETAIN_GRAPH) for o in engine.iteration_ops(loop))
    call = call_text(op.operand.func, op.module) if isinstance(op.operand, cst.Call) else "the model"
    effect = (
        "with retain_graph=True every backward() runs through all earlier batches: memory and time per step grow without bound"
        if retained
        else "the next backward() runs into the previous batch's graph, which it already freed (or, with retain_graph=True, "
        "memory and time per step grow with every batch)"
    )
    return f"`{op.name}` is fed back into `{call}(...)` with the autograd graph of the previous batch: {effect}"
