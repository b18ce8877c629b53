from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.engine import Occurrence
from trainlint.analysis.ir import Flag, OpKind
from trainlint.analysis.tensors import graph_part
from trainlint.analysis.keys import variable
from trainlint.analysis.training import backpropagated_names, call_text, innermost_loop
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class LossAccumulatedAsTensor(Rule):
    code = "TL205"
    name = "loss-accumulated-as-tensor"
    severity = Severity.WARNING
    summary = "A running total adds the loss tensor itself, keeping every iteration's autograd graph alive."
    message = "the loss tensor is added to a running total, which keeps each iteration's graph in memory"
    hint = "Accumulate a number instead: `total += loss.item()` (or `loss.detach()` to stay on the device)."
    # The accumulated value is a loss: its name, or the loss call, mentions "loss".
    triggers = ("loss",)

    def check(self, ctx: Context) -> Iterator[Report]:
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.ASSIGN):
            loss = _leaked_loss(occurrence, ctx)
            op = occurrence.op
            if loss is not None and op.module is ctx.model and op.name is not None:
                yield Report(
                    op.node,
                    message=(
                        f"`{op.name}` accumulates the loss tensor `{call_text(loss, ctx.model)}` across iterations: "
                        "each addition chains that iteration's autograd history onto the total, so memory grows with every step"
                    ),
                    hint=f"Add a number instead: `{op.name} += {call_text(loss, ctx.model)}.item()` (or `.detach()` to stay on the device).",
                )


def _leaked_loss(occurrence: Occurrence, ctx: Context) -> cst.BaseExpression | None:
    """The part of an accumulated value that is a loss with a graph, when the total lives
    across iterations of a training loop and is never backpropagated itself."""
    op = occurrence.op
    if not op.has(Flag.AUGMENTED) or op.name is None or op.operand is None or "on" not in occurrence.state.grad:
        return None
    total = occurrence.state.totals.get(variable(occurrence.frame, op.name), frozenset())
    # Reset in this iteration (one loss built in parts), or at every optimizer step (a
    # running loss logged per accumulation window): the graphs it holds stay bounded.
    if not any(t.carried and t.stepped for t in total):
        return None
    loop = innermost_loop(ctx.engine, occurrence)
    if loop is None or not any(o.kind is OpKind.BACKWARD for o in ctx.engine.iteration_ops(loop)):
        return None
    if op.name in backpropagated_names(ctx.engine, loop):
        return None  # the total is the loss (gradient accumulation written by hand)
    return graph_part(op.operand, op.module, ctx.evaluator, lambda name: occurrence.state.totals.get(variable(occurrence.frame, name), frozenset()))
