from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.brains.torch import NLL
from trainlint.analysis.losses import describe_origin, inputs_of_kind, short_name
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class NllLossOnProbabilities(Rule):
    code = "TL103"
    name = "nll-loss-on-probabilities"
    severity = Severity.ERROR
    summary = "nll_loss / NLLLoss receives softmax probabilities instead of log-probabilities."
    message = "nll_loss expects log-probabilities but receives softmax probabilities"
    hint = "Use log_softmax instead of softmax before nll_loss, or pass the logits to cross_entropy."
    triggers = ("nll_loss", "NLLLoss", "criterion", "loss_fn")

    def check(self, ctx: Context) -> Iterator[Report]:
        for loss, probs in inputs_of_kind(ctx.model, ctx.evaluator, NLL, ("probs",)):
            yield Report(
                loss.call,
                message=(
                    f"{short_name(loss.qualname)} receives probabilities from {describe_origin(probs, ctx.model)}; "
                    "it expects log-probabilities, so the loss is just -p and barely trains"
                ),
            )
