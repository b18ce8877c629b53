from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.flow import Action, Event, Path
from trainlint.analysis.training import Clearing, call_text, is_zero_grad_call, step_blocks
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class ZeroGradBetweenBackwardAndStep(Rule):
    code = "TL202"
    name = "zero-grad-between-backward-and-step"
    severity = Severity.ERROR
    summary = "Gradients are cleared after backward() and before the optimizer step that should use them."
    message = "zero_grad() runs after backward() and before step(), so the step applies empty gradients"
    hint = "Move zero_grad() to the start of the iteration (before backward()) or right after step()."
    triggers = ("zero_grad",)

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for body in step_blocks(ctx.flow, ctx.model):
            paths = ctx.flow.paths(body)
            clearing = Clearing(ctx.flow, paths)
            for path in paths:
                for clear, backward, step in _wiping_clears(path, clearing):
                    if id(clear.node) not in reported and _unconditional(clear, backward, step, paths):
                        reported.add(id(clear.node))
                        yield Report(clear.anchor, message=_message(clear, backward, step, ctx))


def _wiping_clears(path: Path, clearing: Clearing) -> Iterator[tuple[Event, Event, Event]]:
    """(clear, backward, step): ``backward``, then ``clear`` of the stepped optimizer's
    gradients, then ``step`` with no backward in between to refill them."""
    backward: Event | None = None
    clears: list[Event] = []
    for event in path:
        if event.action is Action.BACKWARD:
            backward, clears = event, []
        elif event.action is Action.CLEAR and backward is not None and is_zero_grad_call(event):
            clears.append(event)
        elif event.action is Action.STEP and backward is not None:
            for clear in clears:
                if _affects(clear, event, clearing):
                    yield clear, backward, event
            clears = [c for c in clears if not _affects(c, event, clearing)]


def _unconditional(clear: Event, backward: Event, step: Event, paths: list[Path]) -> bool:
    """Every path through the backward and the step also clears: a clear under a condition
    (``if not torch.isfinite(grad_norm): optimizer.zero_grad()``) deliberately skips an update."""
    return all(clear in path for path in paths if backward in path and step in path)


def _affects(clear: Event, step: Event, clearing: Clearing) -> bool:
    """Same optimizer, or a model clear when the block steps a single (or unknown) optimizer:
    with several optimizers a model's zero_grad may belong to another one (GANs)."""
    if clear.receiver == step.receiver:
        return True
    return len(clearing.stepped) <= 1 and clear.receiver not in clearing.stepped


def _message(clear: Event, backward: Event, step: Event, ctx: Context) -> str:
    def text(event: Event) -> str:
        return call_text(event.anchor, ctx.model)

    return (
        f"`{text(clear)}` wipes the gradients computed by `{text(backward)}` before `{text(step)}` uses them, "
        "so the step finds no gradients and the parameters do not learn from this batch"
    )
