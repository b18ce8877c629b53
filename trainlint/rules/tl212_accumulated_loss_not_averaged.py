from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.engine import Engine, Occurrence
from trainlint.analysis.ir import OpKind
from trainlint.analysis.training import call_text, divides_by_accumulation, innermost_loop, loss_scaled_down, runs_every_iteration, stepped_optimizers, target
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class AccumulatedLossNotAveraged(Rule):
    code = "TL212"
    name = "accumulated-loss-not-averaged"
    severity = Severity.INFO
    summary = "Gradient accumulation: backward() runs on every micro-batch, the step every k, and the loss is never divided by k."
    message = "gradients of several micro-batches are summed into one step, but the loss is not divided by their number"
    hint = "Divide the loss by the number of accumulation steps before backward(): `(loss / accumulation_steps).backward()`."
    triggers = ("backward",)

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.BACKWARD):
            op = occurrence.op
            if divides_by_accumulation(ctx.engine, op) or occurrence.state.gated or op.operand is None:
                continue
            if not _accumulates(ctx.engine, occurrence):
                continue
            operand = _unscaled(op.operand)
            if loss_scaled_down(ctx.engine, operand, op.module) is not False:
                continue
            node = occurrence.node_in(ctx.model)
            if id(node) not in reported:
                reported.add(id(node))
                yield Report(node, message=_message(occurrence))


def _accumulates(engine: Engine, backward: Occurrence) -> bool:
    """The backward pass runs on every iteration of a batch loop, adding onto gradients
    an earlier iteration left unapplied, and the one optimizer steps only on some
    iterations."""
    loop = innermost_loop(engine, backward)
    if loop is None or backward.loops[-1].first or not engine.is_batch_loop(loop):
        return False
    if not runs_every_iteration(engine, backward, loop):
        return False
    steps = stepped_optimizers(engine, loop)
    if not steps or any(runs_every_iteration(engine, step, loop) for step in steps):
        return False
    # One optimizer: several stepped at their own rates (Adam every other step, Muon every
    # step) sum on purpose.
    keys = {target(engine, step) for step in steps}
    key = keys.pop() if len(keys) == 1 else None
    return key is not None and any(g.pending for g in backward.state.grad_of(key))


def _unscaled(expr: cst.BaseExpression) -> cst.BaseExpression:
    """``loss`` in ``scaler.scale(loss)``."""
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value == "scale" and expr.args:
        return expr.args[0].value
    return expr


def _message(backward: Occurrence) -> str:
    op = backward.op
    loss = call_text(_unscaled(op.operand), op.module) if op.operand is not None else "the loss"
    return (
        f"`{loss}` is backpropagated on every micro-batch while the optimizer steps only every few iterations "
        "(gradient accumulation), and it is not divided by the number of accumulated micro-batches: each step applies "
        "their summed gradient, so the effective learning rate and the clipping threshold grow with the accumulation "
        "count. This is deliberate only if the loss is already normalised over the whole accumulation window (a sum "
        "divided by the window's token or sample count) or you want summed gradients"
    )
