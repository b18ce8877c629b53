from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.engine import Engine
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.predictions import BatchedCall, Softmax, batch_output, batched_calls, class_axis, returned_by_forward, softmax_calls
from trainlint.analysis.training import call_text
from trainlint.analysis.values import literal_value
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety, integer
from trainlint.rule import Context, Report, Rule


class SoftmaxOverBatchDimension(Rule):
    code = "TL106"
    name = "softmax-over-batch-dimension"
    severity = Severity.ERROR
    summary = "softmax / log_softmax with dim=0 on a [batch, classes] model output normalises across the batch."
    message = "softmax with dim=0 normalises each class over the batch instead of each sample over its classes"
    hint = "Normalise over the class axis: dim=1 (or dim=-1) for [batch, classes] outputs."
    triggers = ("softmax", "Softmax")
    # Passes the class axis the code states (dim 1 for a cross-entropy input, d where the
    # classes are picked with ``argmax(d)``), also for the softmax a ``forward`` returns.
    # Unsafe: the shape is unchanged but every probability changes (the point); a softmax
    # over the batch is occasionally deliberate (batch-level normalisation in clustering).
    fix_safety = FixSafety.UNSAFE

    def check(self, ctx: Context) -> Iterator[Report]:
        for softmax in softmax_calls(ctx.model, ctx.evaluator):
            if softmax.dim is not None and ctx.evaluator.number(softmax.dim, ctx.model) == 0:
                report = _on_output(softmax, ctx) or _in_forward(softmax, ctx)
                if report is not None:
                    yield report

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        model, engine = ctx.model, ctx.engine
        for softmax in softmax_calls(model, ctx.evaluator):
            if softmax.call is not node or softmax.dim is None or literal_value(softmax.dim) != 0:
                continue
            output = batch_output(softmax.operand, model, engine)
            if output is not None:
                axis = class_axis(output, model, engine)
            else:
                used = _forward_use(softmax, model, engine)
                axis = used[1].axis if used is not None else None
            if axis is None or softmax.dim_owner is not softmax.call:
                return None  # a shared ``nn.Softmax(dim=0)`` layer may serve other inputs
            return Fix([Edit(softmax.dim, integer(axis))])
        return None


def _forward_use(softmax: Softmax, model: ModuleModel, engine: Engine) -> tuple[cst.ClassDef, BatchedCall] | None:
    """The model class whose ``forward`` returns the softmax, and a call of that model on
    batches whose outputs feed a classification loss (which says where the classes are)."""
    cls = returned_by_forward(softmax, model, engine.ev)
    used = next(batched_calls(cls, model, engine), None) if cls is not None else None
    return (cls, used) if cls is not None and used is not None else None


def _on_output(softmax: Softmax, ctx: Context) -> Report | None:
    """A softmax of a model's output on a batch, in the loop that ran the model."""
    model, engine = ctx.model, ctx.engine
    output = batch_output(softmax.operand, model, engine)
    axis = class_axis(output, model, engine) if output is not None else None
    if output is None or axis is None:
        return None
    return Report(
        softmax.call,
        message=(
            f"`{call_text(softmax.call, model)}` normalises over dim 0, the batch axis of `{call_text(output.call, model)}`: "
            f"each class is spread over the samples of the batch instead of each sample over its classes (dim {axis}), "
            "so probabilities, predictions and the loss depend on the rest of the batch"
        ),
        hint=f"Use dim={axis}, the class axis of this output.",
    )


def _in_forward(softmax: Softmax, ctx: Context) -> Report | None:
    """The softmax a model's ``forward`` returns, when the model is run on batches whose
    outputs feed a classification loss."""
    found = _forward_use(softmax, ctx.model, ctx.engine)
    if found is None:
        return None
    cls, used = found
    return Report(
        softmax.call,
        message=(
            f"{cls.name.value}.forward returns `{call_text(softmax.call, ctx.model)}`, normalised over dim 0, but "
            f"`{call_text(used.call, used.module)}` at {used.module.where(used.call)} runs it on a batch whose classes are on "
            f"dim {used.axis}: each class is spread over the samples of the batch, so predictions and the loss depend on the "
            "rest of the batch"
        ),
        hint=f"Use dim={used.axis} (or dim=-1), the class axis of the output.",
    )
