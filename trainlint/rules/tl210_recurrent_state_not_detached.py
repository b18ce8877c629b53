from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.brains import torch as T
from trainlint.analysis.engine import Engine, Occurrence
from trainlint.analysis.ir import Flag, OpKind
from trainlint.analysis.keys import variable
from trainlint.analysis.names import target_names
from trainlint.analysis.training import call_text, innermost_loop
from trainlint.analysis.values import Obj
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety, method_call
from trainlint.rule import Context, Report, Rule


class RecurrentStateNotDetached(Rule):
    code = "TL210"
    name = "recurrent-state-not-detached"
    severity = Severity.ERROR
    summary = "An RNN/LSTM hidden state is carried into the next batch without .detach(): backward() runs through every earlier batch."
    message = "the hidden state is fed into the next batch with its autograd graph"
    hint = "Detach the state between batches: `hidden = hidden.detach()` (for an LSTM, detach both h and c), or re-initialise it."
    triggers = ("backward",)
    # ``out, h = gru(x, h)`` -> ``out, h = gru(x, h.detach())``, where the state is evidently
    # tensors: each name of a tuple argument (``lstm(x, (h, c))``), or a name passed to a
    # single-state layer (``nn.GRU``, ``nn.RNN`` and their cells). Unsafe: gradients no
    # longer flow from this batch into earlier ones, which is the point (truncated
    # backpropagation through time) but changes the gradients of code that meant to
    # backpropagate through the whole stream.
    fix_safety = FixSafety.UNSAFE

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

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        assign = ctx.model.parent_of(node)
        if not isinstance(node, cst.Call) or not isinstance(assign, cst.Assign):
            return None
        assigned = {name.value for target in assign.targets for name in target_names(target.target)}
        single = any(isinstance(v, Obj) and v.qualname in T.SINGLE_STATE_RNNS for v in ctx.evaluator.eval(node.func, ctx.model))
        edits = []
        for arg in node.args:
            value = arg.value
            if isinstance(value, cst.Tuple):
                states = [e.value for e in value.elements if isinstance(e.value, cst.Name) and e.value.value in assigned]
                edits += [Edit(state, method_call(state, "detach")) for state in states]
            elif single and isinstance(value, cst.Name) and value.value in assigned:
                edits.append(Edit(value, method_call(value, "detach")))
        return Fix(edits) if edits else None


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
