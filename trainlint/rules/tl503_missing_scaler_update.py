from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.amp import report_node
from trainlint.analysis.flow import Action
from trainlint.analysis.training import call_text, step_blocks
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
        for body in step_blocks(ctx.flow, ctx.model):
            events = list(ctx.flow.events(body))
            # Anywhere in the iteration counts: an update under the same condition as the
            # step (gradient accumulation) is fine, and paths are not needed for "never".
            if any(e.action is Action.SCALER_UPDATE for e in events):
                continue
            for step in (e for e in events if e.action is Action.STEP and e.via_scaler):
                node = report_node(step, ctx.model)
                if id(node) not in reported:
                    reported.add(id(node))
                    yield Report(node, message=_message(call_text(step.node, step.module)))


def _message(step: str) -> str:
    return (
        f"`{step}` is not followed by `scaler.update()` in the iteration: the loss scale never "
        "shrinks after an overflow or grows back, and the next `scaler.step()` raises"
    )
