from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.ir import OpKind
from trainlint.analysis.training import call_text, earliest, grads
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class BackwardOnUnscaledLoss(Rule):
    code = "TL504"
    name = "backward-on-unscaled-loss"
    severity = Severity.ERROR
    summary = "loss.backward() runs on the unscaled loss while a GradScaler steps the optimizer."
    message = "backward() runs on the unscaled loss although a GradScaler steps the optimizer"
    hint = "Call scaler.scale(loss).backward() so that float16 gradients do not underflow and scaler.step() unscales correctly."
    triggers = ("scaler", "Scaler")

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.STEP):
            if occurrence.op.via is None:
                continue
            backward = earliest(g.plain for g in grads(ctx.engine, occurrence) if g.plain is not None)
            if backward is None:
                continue
            node = next((o.node_in(ctx.model) for o in ctx.engine.occurrences_of(backward) if o.home is occurrence.home), None)
            if node is not None and id(node) not in reported:
                reported.add(id(node))
                yield Report(
                    node,
                    message=(
                        f"`{call_text(backward.node, backward.module)}` backpropagates the unscaled loss, but "
                        f"`{call_text(occurrence.op.node, occurrence.op.module)}` divides the gradients by the loss scale: updates "
                        "shrink by that factor (65536 at first) and small float16 gradients underflow to zero"
                    ),
                )
