from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.ir import OpKind
from trainlint.analysis.training import call_text, extends_container, kept_loss
from trainlint.analysis.uses import variable_uses
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
    # ``total += loss`` -> ``total += loss.item()``, or ``loss.detach()`` where the total is
    # used as a tensor later (``total.detach()``, ``dist.all_reduce(total)``, or any use not
    # proven to take a number): the total keeps its value and, with ``.detach()``, its type,
    # dtype and device; only the graphs it kept alive are released. No fix where the total,
    # or a value derived from it, is backpropagated; unsafe where it reaches code the
    # analysis does not see (returned to unknown callers, passed to a project function).
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
        found = _accumulation(node)
        if found is None:
            return None
        total, added = found
        uses = variable_uses(total, node, ctx.model, ctx.evaluator)
        if uses.graph:
            return None  # the total must keep its graph
        edit = Edit(added, method_call(added, "detach" if uses.tensor else "item"))
        return Fix([edit], FixSafety.UNSAFE if uses.unknown else None)


def _accumulation(statement: cst.CSTNode) -> tuple[str, cst.BaseExpression] | None:
    """The total and the added value ``x`` of ``total += x`` and ``total = total + x``: the
    rule reports both forms."""
    if isinstance(statement, cst.AugAssign) and isinstance(statement.target, cst.Name):
        return statement.target.value, statement.value
    if isinstance(statement, cst.Assign) and isinstance(statement.value, cst.BinaryOperation):
        target = statement.targets[0].target
        return (target.value, statement.value.right) if isinstance(target, cst.Name) else None
    return None
