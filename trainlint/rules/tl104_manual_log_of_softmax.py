from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.losses import describe_origin
from trainlint.analysis.values import TensorV
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule

# Terminal names of ``torch.log`` / ``torch.log2`` / ``torch.log10`` and ``tensor.log()``.
LOG_NAMES = ("log", "log2", "log10")


class ManualLogOfSoftmax(Rule):
    code = "TL104"
    name = "manual-log-of-softmax"
    severity = Severity.WARNING
    summary = "log() taken of softmax probabilities: numerically unstable."
    message = "log of softmax probabilities underflows to -inf for confident wrong predictions"
    hint = "Use F.log_softmax(logits, dim) (or F.cross_entropy on the logits) instead of log(softmax(...))."
    # The call, not the softmax: the probabilities may come from a model in another file.
    triggers = ("log(", "log2(", "log10(")

    def check(self, ctx: Context) -> Iterator[Report]:
        model = ctx.model
        for call in (c for name in LOG_NAMES for c in model.calls_by_name.get(name, [])):
            if not _is_manual_log(call, ctx):
                continue
            probs = _softmax_operand(call, ctx)
            if probs is not None:
                yield Report(
                    call,
                    message=(
                        f"log of the probabilities from {describe_origin(probs, model)}: as soon as one rounds to 0 "
                        "it gives -inf, and the loss becomes inf or nan"
                    ),
                )


def _is_manual_log(call: cst.Call, ctx: Context) -> bool:
    """The evaluator marks ``log`` of a softmax or sigmoid output as manual log-probabilities."""
    return any(
        isinstance(v, TensorV) and v.kind == "manual_log_probs" and v.origin is call
        for v in ctx.evaluator.eval(call, ctx.model)
    )


def _softmax_operand(call: cst.Call, ctx: Context) -> TensorV | None:
    """The softmax output being logged (``None`` for a sigmoid output)."""
    func = call.func
    operand = call.args[0].value if call.args else (func.value if isinstance(func, cst.Attribute) else None)
    if operand is None:
        return None
    return next((k for k in ctx.evaluator.tensor_kinds(operand, ctx.model) if k.kind == "probs"), None)
