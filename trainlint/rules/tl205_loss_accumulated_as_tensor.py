from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.ir import OpKind
from trainlint.analysis.training import call_text, extends_container, kept_loss
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety, method_call
from trainlint.rule import Context, Report, Rule


class LossAccumulatedAsTensor(Rule):
    code = "TL205"
    name = "loss-accumulated-as-tensor"
    severity = Severity.WARNING
    summary = "A running total adds the loss tensor itself, keeping every iteration's autograd graph alive."
    message = "the loss tensor is added to a running total, which keeps each iteration's graph in memory"
    hint = "Accumulate a number instead: `total += loss.item()` (or `loss.detach()` to stay on the device)."
    # The accumulated value is a loss: its name, or the loss call, mentions "loss".
    triggers = ("loss",)
    fix_safety = FixSafety.SAFE

    def check(self, ctx: Context) -> Iterator[Report]:
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.ASSIGN):
            op = occurrence.op
            loss = None if extends_container(op) else kept_loss(ctx.engine, occurrence)
            if loss is not None and op.module is ctx.model and op.name is not None:
                yield Report(
                    op.node,
                    message=(
                        f"`{op.name}` accumulates the loss tensor `{call_text(loss, ctx.model)}` across iterations: "
                        "each addition chains that iteration's autograd history onto the total, so memory grows with every step"
                    ),
                    hint=f"Add a number instead: `{op.name} += {call_text(loss, ctx.model)}.item()` (or `.detach()` to stay on the device).",
                )

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        added = _added_value(node)
        return Fix([Edit(added, method_call(added, "item"))]) if added is not None else None


def _added_value(statement: cst.CSTNode) -> cst.BaseExpression | None:
    """``x`` in ``total += x`` and in ``total = total + x``: the rule reports both forms."""
    if isinstance(statement, cst.AugAssign):
        return statement.value
    if isinstance(statement, cst.Assign) and isinstance(statement.value, cst.BinaryOperation):
        return statement.value.right
    return None
