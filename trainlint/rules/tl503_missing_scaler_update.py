from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.engine import Occurrence
from trainlint.analysis.ir import OpKind
from trainlint.analysis.training import call_text, innermost_loop, iteration_ends
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class MissingScalerUpdate(Rule):
    code = "TL503"
    name = "missing-scaler-update"
    severity = Severity.ERROR
    summary = "scaler.step(optimizer) runs without scaler.update() in the same iteration."
    message = "scaler.step() is never followed by scaler.update(), so the loss scale never adapts"
    hint = "Call scaler.update() once per iteration, right after the last scaler.step(optimizer)."
    triggers = ("scaler", "Scaler")

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.STEP):
            if occurrence.op.via is None or _updates(occurrence, ctx):
                continue
            node = occurrence.node_in(ctx.model)
            if id(node) not in reported:
                reported.add(id(node))
                step = call_text(occurrence.op.node, occurrence.op.module)
                yield Report(
                    node,
                    message=(
                        f"`{step}` is not followed by `scaler.update()` in the iteration: the loss scale never "
                        "shrinks after an overflow or grows back, and the next `scaler.step()` raises"
                    ),
                )


def _updates(step: Occurrence, ctx: Context) -> bool:
    """Some path of the step's iteration (or of its root, outside loops) updates a scaler:
    an update under the same condition as the step (gradient accumulation) is fine."""
    loop = innermost_loop(ctx.engine, step)
    if loop is not None:
        # Iterations that can run with what held at the step: the update of an AMP branch
        # does not cover its fp32 twin.
        return any(op.kind is OpKind.SCALER_UPDATE for level in iteration_ends(ctx.engine, loop, step) for op in level.may)
    return any(o.home is step.home for o in ctx.engine.occurrences(step.home.module, OpKind.SCALER_UPDATE))
