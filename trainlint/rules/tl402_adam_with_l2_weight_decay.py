from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.argparse_defaults import resolve_number
from trainlint.analysis.optimizers import OptimizerCall, optimizer_calls
from trainlint.analysis.values import call_arg, literal_value
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule

ADAM = frozenset({"torch.optim.Adam", "torch.optim.adam.Adam"})


class AdamWithL2WeightDecay(Rule):
    code = "TL402"
    name = "adam-with-l2-weight-decay"
    severity = Severity.WARNING
    summary = "torch.optim.Adam with weight_decay > 0 applies L2 regularisation, not decoupled weight decay."
    message = "Adam's weight_decay is an L2 term added to the gradient, which the adaptive step rescales"
    hint = "Use torch.optim.AdamW for decoupled weight decay (or set weight_decay=0 on Adam)."
    triggers = ("Adam",)

    def check(self, ctx: Context) -> Iterator[Report]:
        for optimizer in optimizer_calls(ctx.model, ctx.evaluator):
            if optimizer.qualname not in ADAM or _decoupled(optimizer.call):
                continue
            value = _nonzero_decay(optimizer, ctx)
            if value is not None:
                yield Report(
                    optimizer.call,
                    message=(
                        f"Adam with weight_decay={value:g} adds an L2 penalty to the gradient; Adam then divides it by "
                        "the running gradient magnitude, so parameters with large gradients are barely decayed"
                    ),
                )


def _nonzero_decay(optimizer: OptimizerCall, ctx: Context) -> float | None:
    """The first decay that certainly is not 0, over the argument or every group."""
    if optimizer.groups is None:
        candidates = [(optimizer.weight_decay, ctx.model)]
    else:
        candidates = [(g.decay, g.module) for g in optimizer.groups]
    for expr, module in candidates:
        if expr is not None:
            number = resolve_number(expr, module, ctx.evaluator)
            if number:
                return number
    return None


def _decoupled(call: cst.Call) -> bool:
    """PyTorch >= 2.6 accepts ``Adam(..., decoupled_weight_decay=True)``, which is AdamW."""
    flag = call_arg(call, None, "decoupled_weight_decay")
    return flag is not None and literal_value(flag) is not False
