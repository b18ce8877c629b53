from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.ir import OpKind
from trainlint.analysis.training import call_text, clipped, measures_only
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class ClipAfterStep(Rule):
    code = "TL204"
    name = "clip-after-step"
    # An error: the clipping never limits any update, which is always a bug, and the model
    # silently trains without the protection against exploding gradients it was given.
    severity = Severity.ERROR
    summary = "Gradients are clipped after optimizer.step(), when the update has already been applied."
    message = "gradient clipping runs after optimizer.step(), so it never limits an update"
    hint = "Clip between backward() and step(); with a GradScaler call scaler.unscale_(optimizer) first, then clip, then scaler.step(optimizer)."
    triggers = ("clip_grad",)

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.CLIP):
            if measures_only(occurrence.op):
                continue
            for values in clipped(ctx.engine, occurrence):
                steps = [g.stepped for g in values if g.stepped is not None and not g.pending]
                if not values or len(steps) != len(values):
                    continue
                node = occurrence.node_in(ctx.model)
                if id(node) not in reported:
                    reported.add(id(node))
                    stepped = call_text(steps[0].node, steps[0].module)
                    yield Report(
                        node,
                        message=f"gradients are clipped after `{stepped}` has already applied them, so the clipping never limits an update",
                    )
