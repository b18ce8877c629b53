from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.amp import exclusive, implied, is_scaled_backward, report_node
from trainlint.analysis.flow import Action, Event, Path
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.training import call_text, step_blocks
from trainlint.analysis.values import Evaluator
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule
# Clipping with an infinite threshold only measures the norm: TL204 already knows that idiom.
from trainlint.rules.tl204_clip_after_step import _measures_only


class ClipBeforeUnscale(Rule):
    code = "TL501"
    name = "clip-before-unscale"
    severity = Severity.ERROR
    summary = "Gradients from scaler.scale(loss).backward() are clipped before scaler.unscale_(optimizer)."
    message = "gradients are clipped while still multiplied by the GradScaler's scale factor"
    hint = "Call scaler.unscale_(optimizer) after the backward and before clipping; scaler.step(optimizer) then skips the second unscale."
    # The clip or the scaled backward may sit in a helper of another file.
    # "scaler": the clip may live in a helper of another file, called next to the scaler.
    triggers = ("clip_grad", "scaler")

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for body in step_blocks(ctx.flow, ctx.model):
            paths = ctx.flow.paths(body)
            protected = _protected(paths, ctx.model)
            for path in paths:
                for backward, clip in _scaled_clips(path, ctx.evaluator, ctx.model):
                    node = report_node(clip, ctx.model)
                    if (id(backward), id(clip)) in protected or _measures_only(clip):
                        continue
                    if id(node) not in reported:
                        reported.add(id(node))
                        yield Report(node, message=_message(backward, clip, ctx))


def _scaled_clips(path: Path, ev: Evaluator, module: ModuleModel) -> Iterator[tuple[Event, Event]]:
    """(scaled backward, clip) with no unscale_ between them on the path."""
    backward: Event | None = None
    for event in path:
        if event.action is Action.BACKWARD:
            backward = event if is_scaled_backward(event, ev) else None
        elif event.action is Action.UNSCALE:
            backward = None
        elif event.action is Action.CLIP and backward is not None and not exclusive(backward, event, module):
            yield backward, event


def _protected(paths: list[Path], module: ModuleModel) -> set[tuple[int, int]]:
    """(backward, clip) pairs that some path separates by an unscale_ which runs whenever both
    do: the paths that skip it only combine branches that never run together."""
    protected: set[tuple[int, int]] = set()
    for path in paths:
        for index, unscale in enumerate(path):
            if unscale.action is not Action.UNSCALE:
                continue
            for backward in (e for e in path[:index] if e.action is Action.BACKWARD):
                for clip in (e for e in path[index + 1:] if e.action is Action.CLIP):
                    if implied(unscale, (backward, clip), module):
                        protected.add((id(backward), id(clip)))
    return protected


def _message(backward: Event, clip: Event, ctx: Context) -> str:
    return (
        f"`{call_text(clip.node, clip.module)}` clips the gradients of `{call_text(backward.node, backward.module)}` "
        "while they are still multiplied by the loss scale (65536 at first), so the threshold is "
        "effectively divided by the scale and clipping barely ever (or always) triggers"
    )
