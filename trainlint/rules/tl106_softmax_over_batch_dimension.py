from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.predictions import batch_output, class_axis, softmax_calls
from trainlint.analysis.training import call_text
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class SoftmaxOverBatchDimension(Rule):
    code = "TL106"
    name = "softmax-over-batch-dimension"
    severity = Severity.ERROR
    summary = "softmax / log_softmax with dim=0 on a [batch, classes] model output normalises across the batch."
    message = "softmax with dim=0 normalises each class over the batch instead of each sample over its classes"
    hint = "Normalise over the class axis: dim=1 (or dim=-1) for [batch, classes] outputs."
    triggers = ("softmax", "Softmax")

    def check(self, ctx: Context) -> Iterator[Report]:
        model, engine = ctx.model, ctx.engine
        for softmax in softmax_calls(model, ctx.evaluator):
            if softmax.dim is None or ctx.evaluator.number(softmax.dim, model) != 0:
                continue
            output = batch_output(softmax.operand, model, engine)
            axis = class_axis(output, model, engine) if output is not None else None
            if output is None or axis is None:
                continue
            yield Report(
                softmax.call,
                message=(
                    f"`{call_text(softmax.call, model)}` normalises over dim 0, the batch axis of `{call_text(output.call, model)}`: "
                    f"each class is spread over the samples of the batch instead of each sample over its classes (dim {axis}), "
                    "so probabilities, predictions and the loss depend on the rest of the batch"
                ),
                hint=f"Use dim={axis}, the class axis of this output.",
            )
