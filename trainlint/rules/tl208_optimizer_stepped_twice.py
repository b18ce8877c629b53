from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.engine import Engine, Occurrence
from trainlint.analysis.ir import Op, OpKind
from trainlint.analysis.training import call_text, earliest, grads
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class OptimizerSteppedTwice(Rule):
    code = "TL208"
    name = "optimizer-stepped-twice"
    severity = Severity.ERROR
    summary = "The optimizer steps twice on the same gradients in one iteration (scaler.step(opt) then opt.step(), or opt.step() twice)."
    message = "the optimizer steps again on gradients a previous step already applied"
    hint = "Step each optimizer once per backward pass: keep scaler.step(optimizer) (with AMP) or optimizer.step(), not both."
    triggers = (".step(",)

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.STEP):
            previous = _applied_again(ctx.engine, occurrence)
            node = occurrence.anchor_in(ctx.model)  # in the loop: the call of a helper that steps
            if previous is not None and id(node) not in reported:
                reported.add(id(node))
                yield Report(node, message=_message(occurrence.op, previous))


def _applied_again(engine: Engine, occurrence: Occurrence) -> Op | None:
    """The earlier step of the same optimizer whose gradients this step applies again: on
    every way here, a step of this iteration (of the function, outside loops) applied
    them and no backward pass or clear ran since."""
    before = grads(engine, occurrence)
    previous = [g.stepped for g in before]
    if not previous or None in previous or any(g.pending for g in before):
        return None
    if occurrence.loops and not all(p in occurrence.loops[-1].must for p in previous):
        return None  # applied on an earlier iteration: a step without a backward pass is TL201's business
    return earliest(p for p in previous if p is not None)


def _message(step: Op, previous: Op) -> str:
    again = call_text(step.node, step.module)
    first = call_text(previous.node, previous.module)
    where = f" ({previous.module.where(previous.node)})"
    return (
        f"`{again}` applies the gradients that `{first}`{where} already applied, with no backward pass in between: "
        "each batch updates the parameters twice, as if the learning rate were doubled, and momentum/Adam "
        "statistics count every gradient twice"
    )
