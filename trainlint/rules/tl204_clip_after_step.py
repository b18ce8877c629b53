from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.flow import Action, Event, Path
from trainlint.analysis.training import call_text, step_blocks
from trainlint.analysis.values import call_arg
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
        for body in step_blocks(ctx.flow, ctx.model):
            for path in ctx.flow.paths(body):
                for clip, step in _late_clips(path):
                    if id(clip.node) not in reported and not _measures_only(clip):
                        reported.add(id(clip.node))
                        yield Report(clip.anchor, message=_message(clip, step, ctx))


def _late_clips(path: Path) -> Iterator[tuple[Event, Event]]:
    """(clip, step): a clip that follows a step with no backward in between."""
    step: Event | None = None
    for event in path:
        if event.action is Action.STEP:
            step = event
        elif event.action is Action.BACKWARD:
            step = None
        elif event.action is Action.CLIP and step is not None:
            yield event, step


def _measures_only(clip: Event) -> bool:
    """``clip_grad_norm_(params, float("inf"))`` only computes the norm (for logging)."""
    node = clip.node
    if not isinstance(node, cst.Call):
        return False
    limit = call_arg(node, 1, "max_norm") or call_arg(node, 1, "clip_value")
    return limit is not None and "inf" in clip.module.tree.code_for_node(limit)


def _message(clip: Event, step: Event, ctx: Context) -> str:
    stepped = call_text(step.anchor, ctx.model)
    return f"gradients are clipped after `{stepped}` has already applied them, so the clipping never limits an update"
