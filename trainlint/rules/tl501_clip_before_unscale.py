from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.ir import Flag, OpKind
from trainlint.analysis.training import call_text, clipped, measures_only
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class ClipBeforeUnscale(Rule):
    code = "TL501"
    name = "clip-before-unscale"
    severity = Severity.ERROR
    summary = "Gradients from scaler.scale(loss).backward() are clipped before scaler.unscale_(optimizer)."
    message = "gradients are clipped while still multiplied by the GradScaler's scale factor"
    hint = "Call scaler.unscale_(optimizer) after the backward and before clipping; scaler.step(optimizer) then skips the second unscale."
    # "scaler": the clip may live in a helper of another file, called next to the scaler.
    triggers = ("clip_grad", "scaler")

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.CLIP):
            if measures_only(occurrence.op) or occurrence.op.has(Flag.UNSCALES):
                continue
            scaled = [g.scaled for values in clipped(ctx.engine, occurrence) for g in values if g.scaled is not None and g.pending]
            node = occurrence.node_in(ctx.model)
            if scaled and id(node) not in reported:
                reported.add(id(node))
                backward = scaled[0]
                yield Report(
                    node,
                    message=(
                        f"`{call_text(occurrence.op.node, occurrence.op.module)}` clips the gradients of "
                        f"`{call_text(backward.node, backward.module)}` while they are still multiplied by the loss "
                        "scale (65536 at first), so the threshold is effectively divided by the scale and clipping "
                        "barely ever (or always) triggers"
                    ),
                )
