from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.values import TensorV
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class ManualLogOfSoftmax(Rule):
    code = "TL104"
    name = "manual-log-of-softmax"
    severity = Severity.WARNING
    summary = "log() taken of softmax probabilities: numerically unstable."
    message = "log of softmax probabilities underflows to -inf for confident wrong predictions"
    hint = "Use F.log_softmax(logits, dim) (or F.cross_entropy on the logits) instead of log(softmax(...))."
    triggers = ("log",)

    def check(self, ctx: Context) -> Iterator[Report]:
        model, ev = ctx.model, ctx.evaluator
        for call in model.calls_by_name.get("log", []):
            for value in ev.eval(call, model):
                if isinstance(value, TensorV) and value.kind == "manual_log_probs" and value.origin is call:
                    if _of_softmax(call, ctx):
                        yield Report(call)
                    break


def _of_softmax(call: cst.Call, ctx: Context) -> bool:
    """The logged value is softmax probabilities (not a sigmoid output)."""
    func = call.func
    operand = call.args[0].value if call.args else (func.value if isinstance(func, cst.Attribute) else None)
    if operand is None:
        return False
    return any(k.kind == "probs" for k in ctx.evaluator.tensor_kinds(operand, ctx.model))
