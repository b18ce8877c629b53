from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.engine import Occurrence
from trainlint.analysis.ir import OpKind
from trainlint.analysis.training import call_text, grads, innermost_loop
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class OptimizerStepBypassesScaler(Rule):
    code = "TL502"
    name = "optimizer-step-bypasses-scaler"
    severity = Severity.ERROR
    summary = "optimizer.step() is called directly on gradients produced by scaler.scale(loss).backward()."
    message = "optimizer.step() applies scaled gradients directly, bypassing the GradScaler"
    hint = "Replace optimizer.step() with scaler.step(optimizer) followed by scaler.update(); never call both."
    triggers = ("scale(",)

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.STEP):
            if occurrence.op.via is not None:
                continue
            scaled = [g.scaled for g in grads(ctx.engine, occurrence) if g.scaled is not None]
            node = occurrence.node_in(ctx.model)
            if scaled and id(node) not in reported:
                reported.add(id(node))
                yield Report(node, message=_message(occurrence, scaled[0].node, scaled[0].module, ctx))


def _message(occurrence: Occurrence, backward: object, module: object, ctx: Context) -> str:
    step = occurrence.op
    stepped = call_text(step.node, step.module)
    scaled = call_text(backward, module)  # type: ignore[arg-type]
    loop = innermost_loop(ctx.engine, occurrence)
    also_scaler = loop is not None and any(op.kind is OpKind.STEP and op.via is not None for op in ctx.engine.iteration_ops(loop))
    if also_scaler:
        return (
            f"`{stepped}` runs in addition to the scaler's step of the same optimizer: every batch "
            f"is applied twice, the second time with the gradients of `{scaled}` still scaled"
        )
    return (
        f"`{stepped}` applies the gradients of `{scaled}` while they are still multiplied by the loss "
        "scale, and steps with inf/NaN gradients are no longer skipped"
    )
