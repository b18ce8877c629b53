from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.amp import autocast_dtype, creates_grad_scaler
from trainlint.analysis.engine import LoopFacts
from trainlint.analysis.ir import Flag, Op, OpKind
from trainlint.analysis.training import call_text, innermost_loop
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


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
            if any(_unscaled_training(snapshot_loop, ctx) for snapshot_loop in _iterations(call, ctx)):
                yield Report(
                    call,
                    message=(
                        f"`{call_text(call, ctx.model)}` runs the training forward in float16 but no GradScaler "
                        "scales the loss: gradients below ~6e-8 flush to zero and larger losses can overflow"
                    ),
                )


def _opens_with(call: cst.Call, ctx: Context) -> bool:
    """``with torch.autocast(...):`` (a bare call or a stored context manager is not a region)."""
    item = ctx.model.parent_of(call)
    return isinstance(item, cst.WithItem) and item.item is call


def _iterations(call: cst.Call, ctx: Context) -> list[frozenset[Op]]:
    """What the iteration around the autocast region runs (its loop's iterations, or its
    function when that backpropagates and steps outside any loop), per activation."""
    found: list[frozenset[Op]] = []
    for snapshot in ctx.engine.snapshots(call, ctx.model):
        if snapshot.state.loops:
            loop: LoopFacts | None = ctx.engine._loops.get(snapshot.state.loops[-1].loop)
            if loop is not None:
                found.append(ctx.engine.iteration_ops(loop))
        else:
            found.append(frozenset(o.op for o in ctx.engine.occurrences(ctx.model) if o.frame is snapshot.frame))
    return found


def _unscaled_training(ops: frozenset[Op], ctx: Context) -> bool:
    """The iteration backpropagates and steps, and nothing in it scales the loss (a scaler,
    a framework's backward, timm's loss-scaler call)."""
    kinds = {op.kind for op in ops}
    if not {OpKind.BACKWARD, OpKind.STEP} <= kinds:
        return False
    return not any(
        op.kind in (OpKind.UNSCALE, OpKind.SCALER_UPDATE)
        or (op.kind is OpKind.STEP and op.via is not None)
        or (op.kind is OpKind.BACKWARD and (op.has(Flag.SCALED) or op.has(Flag.FRAMEWORK)))
        for op in ops
    )
