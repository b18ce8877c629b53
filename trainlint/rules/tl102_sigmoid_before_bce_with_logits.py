from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.brains.torch import BCE_WITH_LOGITS
from trainlint.analysis.losses import describe_origin, inputs_of_kind, removable_activation, short_name
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety
from trainlint.rule import Context, Report, Rule


class SigmoidBeforeBCEWithLogits(Rule):
    code = "TL102"
    name = "sigmoid-before-bce-with-logits"
    severity = Severity.ERROR
    summary = "A sigmoid output is passed as the input of BCEWithLogitsLoss."
    message = "sigmoid output is passed to BCEWithLogitsLoss, which applies sigmoid itself"
    hint = "Pass the raw logits to BCEWithLogitsLoss (or keep the sigmoid and use BCELoss, which is less stable)."
    triggers = ("binary_cross_entropy_with_logits", "BCEWithLogitsLoss", "criterion", "loss_fn")
    # Drops the sigmoid, offered only when its result feeds this loss alone; unsafe, as TL101.
    fix_safety = FixSafety.UNSAFE

    def check(self, ctx: Context) -> Iterator[Report]:
        for loss, sigmoid in inputs_of_kind(ctx.model, ctx.evaluator, BCE_WITH_LOGITS, ("sigmoid",)):
            yield Report(
                loss.call,
                message=(
                    f"{short_name(loss.qualname)} receives the output of {describe_origin(sigmoid, ctx.model)}; "
                    "it applies sigmoid again, squashing predictions into [0.5, 0.73] and stalling training"
                ),
            )

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        if not isinstance(node, cst.Call):
            return None
        found = removable_activation(node, ctx.model, ctx.evaluator, BCE_WITH_LOGITS, "sigmoid", "sigmoid")
        return Fix([Edit(*found)]) if found is not None else None
