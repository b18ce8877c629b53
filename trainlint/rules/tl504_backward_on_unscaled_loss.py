from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.amp import exclusive, is_framework_backward, is_scaled_backward, report_node
from trainlint.analysis.flow import Action, Event, Path
from trainlint.analysis.training import call_text, step_blocks
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
        for body in step_blocks(ctx.flow, ctx.model):
            for path in ctx.flow.paths(body):
                for backward, step in _unscaled_backwards(path, ctx):
                    node = report_node(backward, ctx.model)
                    if id(node) not in reported:
                        reported.add(id(node))
                        yield Report(node, message=_message(backward, step))


def _unscaled_backwards(path: Path, ctx: Context) -> Iterator[tuple[Event, Event]]:
    """(plain backward, scaler step): the latest backward before a scaler step was unscaled."""
    backward: Event | None = None
    for event in path:
        if event.action is Action.BACKWARD:
            plain = not is_scaled_backward(event, ctx.evaluator) and not is_framework_backward(event, ctx.evaluator)
            backward = event if plain else None
        elif event.action is Action.STEP and event.via_scaler and backward is not None:
            if not exclusive(backward, event, ctx.model):
                yield backward, event


def _message(backward: Event, step: Event) -> str:
    return (
        f"`{call_text(backward.node, backward.module)}` backpropagates the unscaled loss, but "
        f"`{call_text(step.node, step.module)}` divides the gradients by the loss scale: updates "
        "shrink by that factor (65536 at first) and small float16 gradients underflow to zero"
    )
