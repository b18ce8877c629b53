from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.amp import exclusive, is_scaled_backward, report_node
from trainlint.analysis.flow import Action, Event, Path
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.training import call_text, step_blocks
from trainlint.analysis.values import Evaluator
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
        for body in step_blocks(ctx.flow, ctx.model):
            for path in ctx.flow.paths(body):
                for backward, step in _direct_steps(path, ctx.evaluator, ctx.model):
                    node = report_node(step, ctx.model)
                    if id(node) not in reported:
                        reported.add(id(node))
                        yield Report(node, message=_message(backward, step, path))


def _direct_steps(path: Path, ev: Evaluator, module: ModuleModel) -> Iterator[tuple[Event, Event]]:
    """(scaled backward, plain optimizer step): the latest backward on the path was scaled."""
    backward: Event | None = None
    for event in path:
        if event.action is Action.BACKWARD:
            backward = event if is_scaled_backward(event, ev) else None
        elif event.action is Action.STEP and not event.via_scaler and backward is not None:
            if not exclusive(backward, event, module):
                yield backward, event


def _message(backward: Event, step: Event, path: Path) -> str:
    stepped = call_text(step.node, step.module)
    scaled = call_text(backward.node, backward.module)
    if any(e.via_scaler and e.action is Action.STEP and e.receiver == step.receiver for e in path):
        return (
            f"`{stepped}` runs in addition to the scaler's step of the same optimizer: every batch "
            f"is applied twice, the second time with the gradients of `{scaled}` still scaled"
        )
    return (
        f"`{stepped}` applies the gradients of `{scaled}` while they are still multiplied by the loss "
        "scale, and steps with inf/NaN gradients are no longer skipped"
    )
