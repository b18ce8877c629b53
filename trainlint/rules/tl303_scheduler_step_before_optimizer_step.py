from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.ir import Op, OpKind
from trainlint.analysis.keys import Relation, relation
from trainlint.analysis.schedules import Schedules, is_plateau
from trainlint.analysis.training import call_text, target
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class SchedulerStepBeforeOptimizerStep(Rule):
    code = "TL303"
    name = "scheduler-step-before-optimizer-step"
    severity = Severity.WARNING
    summary = "scheduler.step() runs before optimizer.step() in the same iteration."
    message = "scheduler.step() runs before optimizer.step()"
    hint = "Call scheduler.step() after optimizer.step() (the order required since PyTorch 1.1)."
    triggers = (".step()",)

    def check(self, ctx: Context) -> Iterator[Report]:
        schedules = Schedules(ctx.evaluator, ctx.engine)
        reported: set[int] = set()
        for occurrence in ctx.engine.occurrences(ctx.model, OpKind.STEP):
            optimizer = target(ctx.engine, occurrence)
            for scheduler, owner, _ in occurrence.state.schedules:
                if owner is not None and optimizer is not None and relation(owner, optimizer) is Relation.DIFFERENT:
                    continue
                # ReduceLROnPlateau follows a metric: its place in the iteration does not matter.
                objects = schedules.schedulers(scheduler.target, scheduler.module) if scheduler.target is not None else []
                if (objects and all(is_plateau(obj) for obj in objects)) or scheduler.module is not ctx.model:
                    continue
                if id(scheduler.node) not in reported:
                    reported.add(id(scheduler.node))
                    yield Report(scheduler.node, message=_message(scheduler, occurrence.op))


def _message(scheduler: Op, step: Op) -> str:
    name = call_text(scheduler.target, scheduler.module) if scheduler.target is not None else "scheduler"
    optimizer = call_text(step.target, step.module) if step.target is not None else "the optimizer"
    return (
        f"{name}.step() runs before {optimizer}.step() ({step.module.where(step.node)}) in the same "
        "iteration: the first value of the schedule is skipped and every later LR comes one step early"
    )
