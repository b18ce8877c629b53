from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.ir import Op, OpKind
from trainlint.analysis.training import call_text, grads
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class OptimizerStepBypassesScaler(Rule):
    code = "TL502"
    name = "optimizer-step-bypasses-scaler"
    severity = Severity.ERROR
    summary = "optimizer.step() is called directly on gradients produced by scaler.scale(loss).backward()."
    message = "optimizer.step() applies scaled gradients directly, bypassing the GradScaler"
    hint = "Replace optimizer.step() with scaler.step(optimizer) followed by scaler.update(); never call both."
    # The scaled backward may sit in a helper of another file.
    triggers = ("scale(", "scaler", "optim")

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.STEP):
            if occurrence.op.via is not None:
                continue
            before = grads(ctx.engine, occurrence)
            scaled = [g.scaled for g in before if g.scaled is not None]
            # ``scaler.step(optimizer)`` then ``optimizer.step()``: the batch is applied twice.
            again = [g.stepped for g in before if g.stepped is not None and g.stepped.via is not None and not g.pending]
            node = occurrence.node_in(ctx.model)
            if (scaled or again) and id(node) not in reported:
                reported.add(id(node))
                yield Report(node, message=_message(occurrence.op, scaled[0] if scaled else None))


def _message(step: Op, backward: Op | None) -> str:
    stepped = call_text(step.node, step.module)
    if backward is None:
        return (
            f"`{stepped}` runs in addition to the scaler's step of the same optimizer: every batch "
            "is applied twice, the second time bypassing the scaler's checks for inf/NaN gradients"
        )
    return (
        f"`{stepped}` applies the gradients of `{call_text(backward.node, backward.module)}` while they are still "
        "multiplied by the loss scale, and steps with inf/NaN gradients are no longer skipped"
    )
