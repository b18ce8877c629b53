from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.brains.torch import CROSS_ENTROPY
from trainlint.analysis.losses import describe_origin, inputs_of_kind, removable_activation, short_name
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety
from trainlint.rule import Context, Report, Rule


class SoftmaxBeforeCrossEntropy(Rule):
    code = "TL101"
    name = "softmax-before-cross-entropy"
    severity = Severity.ERROR
    summary = "Probabilities (softmax output) are passed as the input of cross-entropy."
    message = "softmax output is passed to cross-entropy, which applies log_softmax itself"
    hint = "Pass the raw logits to the loss; apply softmax only where you need probabilities (metrics, inference)."
    # "criterion"/"loss_fn": the loss object may be built in another file.
    triggers = ("cross_entropy", "CrossEntropyLoss", "criterion", "loss_fn")
    # Drops the softmax, offered only when its result feeds this loss alone. Unsafe: the loss
    # then computes something else (the point), and so would code that relied on the old,
    # saturated values.
    fix_safety = FixSafety.UNSAFE

    def check(self, ctx: Context) -> Iterator[Report]:
        found = inputs_of_kind(ctx.model, ctx.evaluator, CROSS_ENTROPY, ("probs", "log_probs"))
        for loss, tensor in found:
            origin = describe_origin(tensor, ctx.model)
            if tensor.kind == "probs":
                yield Report(
                    loss.call,
                    message=(
                        f"{short_name(loss.qualname)} receives probabilities from {origin}; "
                        "it applies log_softmax itself, so the loss saturates and gradients vanish"
                    ),
                )
            else:
                yield Report(
                    loss.call,
                    severity=Severity.INFO,
                    message=(
                        f"{short_name(loss.qualname)} receives log-probabilities from {origin}; "
                        "the extra log_softmax is redundant (the result is identical)"
                    ),
                    hint="Drop the log_softmax, or keep it and use nll_loss / NLLLoss to make the intent explicit.",
                )

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        if not isinstance(node, cst.Call):
            return None
        found = removable_activation(node, ctx.model, ctx.evaluator, CROSS_ENTROPY, "probs", "softmax")
        return Fix([Edit(*found)]) if found is not None else None
