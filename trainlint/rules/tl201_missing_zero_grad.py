from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.engine import Occurrence
from trainlint.analysis.ir import Op, OpKind
from trainlint.analysis.keys import Relation
from trainlint.analysis.training import call_text, earliest, grads, innermost_loop, iteration_ends, runs_every_iteration, target
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class MissingZeroGrad(Rule):
    code = "TL201"
    name = "missing-zero-grad"
    severity = Severity.ERROR
    summary = "A training loop steps the optimizer without clearing gradients on every iteration."
    message = "gradients are not cleared between iterations, so backward() adds to the previous batches' gradients"
    hint = "Call optimizer.zero_grad() (or model.zero_grad()) once per iteration, before backward() or right after step()."
    # The backward and the step may live in a helper of another file (a loss-scaler
    # object); the loop's file still names its optimizer.
    triggers = ("backward", ".step(", "optim", "scaler")

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.STEP, home_only=True):
            # Gradients a step of this loop's earlier iterations applied (a step before the
            # loop, e.g. a clear-at-the-start loop before a clear-at-the-end one, is the
            # business of the code before it).
            loops = {level.loop for level in occurrence.loops}
            if not any(g.pending and g.applied in loops for g in grads(ctx.engine, occurrence)):
                continue
            clears = _clears_in_iteration(occurrence, ctx)
            loop = innermost_loop(ctx.engine, occurrence)
            # A clear that runs on some iterations next to a step that runs on some
            # iterations is gradient accumulation.
            if clears and loop is not None and not runs_every_iteration(ctx.engine, occurrence, loop):
                continue
            backward = earliest(occurrence.state.group)
            if backward is None:
                continue
            node = _at(occurrence, backward, ctx)
            if id(node) not in reported:
                reported.add(id(node))
                yield Report(node, message=_message(occurrence, clears, ctx))


def _clears_in_iteration(step: Occurrence, ctx: Context) -> list[Op]:
    """Clears of the stepped optimizer that some iteration of its loop runs."""
    loop = innermost_loop(ctx.engine, step)
    if loop is None:
        return []
    optimizer = target(ctx.engine, step)
    found = []
    for op in {op for level in iteration_ends(ctx.engine, loop, step) for op in level.may}:
        if op.kind is not OpKind.CLEAR:
            continue
        # Judged where the optimizer was already met: before, every clear may be its own.
        occurrences = [c for c in ctx.engine.occurrences_of(op) if optimizer is None or optimizer in c.state.grads]
        if any(optimizer is None or ctx.engine.clears(clear, optimizer) is not Relation.DIFFERENT for clear in occurrences):
            found.append(op)
    return found


def _at(step: Occurrence, backward: Op, ctx: Context) -> cst.CSTNode:
    """The backward in this file, else the call in this file that leads to it."""
    for occurrence in ctx.engine.occurrences_of(backward):
        if occurrence.home is step.home:
            return occurrence.anchor_in(ctx.model)
    return step.anchor_in(ctx.model)


def _message(step: Occurrence, clears: list[Op], ctx: Context) -> str:
    optimizer = call_text(step.op.target, step.op.module) if step.op.target is not None else "the optimizer"
    if not clears:
        return (
            f"backward() runs every iteration but the gradients of `{optimizer}` are never cleared in the loop, "
            f"so they accumulate across iterations and `{optimizer}.step()` applies their running sum"
        )
    clear = earliest(clears)
    assert clear is not None
    return (
        f"the gradients of `{optimizer}` are cleared only on some iterations ({clear.module.where(clear.node)}) but "
        f"`{optimizer}.step()` runs on every one, so backward() accumulates into the gradients of earlier iterations"
    )
