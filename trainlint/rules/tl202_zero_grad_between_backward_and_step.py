from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.ir import OpKind
from trainlint.analysis.training import call_text, earliest, grads, is_zero_grad
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class ZeroGradBetweenBackwardAndStep(Rule):
    code = "TL202"
    name = "zero-grad-between-backward-and-step"
    severity = Severity.ERROR
    summary = "Gradients are cleared after backward() and before the optimizer step that should use them."
    message = "zero_grad() runs after backward() and before step(), so the step applies empty gradients"
    hint = "Move zero_grad() to the start of the iteration (before backward()) or right after step()."
    # The clear may sit in a helper of another file; the loop names its optimizer.
    triggers = ("zero_grad", "optim")

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.STEP, home_only=True):
            before = grads(ctx.engine, occurrence)
            # Every way here wiped the gradients: a clear under a condition
            # (``if not torch.isfinite(norm): optimizer.zero_grad()``) skips an update on purpose.
            if not before or not all(g.wiped is not None and not g.pending for g in before):
                continue
            wipes = [g.wiped for g in before if g.wiped is not None and is_zero_grad(g.wiped)]
            clear = earliest(wipes)
            if clear is None or len(wipes) != len(before):
                continue
            node = next((o.anchor_in(ctx.model) for o in ctx.engine.occurrences_of(clear) if o.home is occurrence.home), None)
            if node is not None and id(node) not in reported:
                reported.add(id(node))
                step = call_text(occurrence.anchor_in(ctx.model), ctx.model)
                yield Report(
                    node,
                    message=(
                        f"`{call_text(clear.node, clear.module)}` wipes the gradients of the backward pass before `{step}` "
                        "uses them, so the step finds no gradients and the parameters do not learn from this batch"
                    ),
                )
