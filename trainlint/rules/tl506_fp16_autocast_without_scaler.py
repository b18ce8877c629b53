from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.amp import autocast_dtype, creates_grad_scaler, is_framework_backward, is_scaled_backward
from trainlint.analysis.flow import Action, Event, Seq
from trainlint.analysis.training import call_text
from trainlint.analysis.values import FuncRef
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule

SCALER_ACTIONS = (Action.UNSCALE, Action.SCALER_UPDATE)


class Fp16AutocastWithoutScaler(Rule):
    code = "TL506"
    name = "fp16-autocast-without-scaler"
    severity = Severity.WARNING
    summary = "A training loop runs its forward under float16 autocast without a GradScaler."
    message = "float16 autocast in a training loop without a GradScaler: small gradients underflow to zero"
    hint = "Use torch.amp.GradScaler(\"cuda\"): scaler.scale(loss).backward(), scaler.step(optimizer), scaler.update(); or autocast with dtype=torch.bfloat16, which needs no scaler."
    triggers = ("autocast",)

    def check(self, ctx: Context) -> Iterator[Report]:
        if creates_grad_scaler(ctx.model, ctx.evaluator):
            return
        for call in ctx.model.calls_by_name.get("autocast", []):
            if not _opens_with(call, ctx) or autocast_dtype(call, ctx.model, ctx.evaluator) != "float16":
                continue
            block = _training_block(call, ctx)
            if block is not None and not _scaled_elsewhere(block, ctx):
                yield Report(call, message=_message(call, ctx))


def _opens_with(call: cst.Call, ctx: Context) -> bool:
    """``with torch.autocast(...):`` (a bare call or a stored context manager is not a region)."""
    item = ctx.model.parent_of(call)
    return isinstance(item, cst.WithItem) and item.item is call


def _training_block(call: cst.Call, ctx: Context) -> tuple[cst.CSTNode, Seq] | None:
    """The training iteration the autocast region belongs to: its innermost loop when that
    loop trains, else its function when the function itself runs backward and a step."""
    loops = ctx.model.enclosing_loops(call)
    if loops:
        return next(((loop, body) for loop, body in ctx.flow.training_loops(ctx.model) if loop is loops[0]), None)
    function = ctx.model.enclosing_function(call)
    if function is None:
        return None
    body = ctx.flow.function_block(FuncRef(ctx.model, function))
    actions = {e.action for e in ctx.flow.events(body, nested_loops=False)}
    return (function, body) if {Action.BACKWARD, Action.STEP} <= actions else None


def _scaled_elsewhere(block: tuple[cst.CSTNode, Seq], ctx: Context) -> bool:
    """The iteration already scales the loss, or hands it to a framework or a scaler helper
    (timm's ``loss_scaler(loss, optimizer)``, ``accelerator.backward(loss)``)."""
    node, body = block
    if "scaler" in ctx.model.tree.code_for_node(node).lower():
        return True
    return any(_handles_scaling(event, ctx) for event in ctx.flow.events(body))


def _handles_scaling(event: Event, ctx: Context) -> bool:
    if event.action in SCALER_ACTIONS or (event.action is Action.STEP and event.via_scaler):
        return True
    return event.action is Action.BACKWARD and (
        is_scaled_backward(event, ctx.evaluator) or is_framework_backward(event, ctx.evaluator)
    )


def _message(call: cst.Call, ctx: Context) -> str:
    return (
        f"`{call_text(call, ctx.model)}` runs the training forward in float16 but no GradScaler "
        "scales the loss: gradients below ~6e-8 flush to zero and larger losses can overflow"
    )
