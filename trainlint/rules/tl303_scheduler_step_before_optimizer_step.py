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
        ctx.engine.analyse(ctx.model)
        early = _early(ctx)
        for scheduler in ctx.engine.ops_in(ctx.model, OpKind.SCHEDULER_STEP):
            step = early.get(scheduler)
            if step is None or scheduler.target is None:
                continue
            # ReduceLROnPlateau follows a metric: its place in the iteration does not matter.
            objects = schedules.schedulers(scheduler.target, scheduler.module)
            if not (objects and all(is_plateau(obj) for obj in objects)):
                yield Report(scheduler.node, message=_message(scheduler, step))


def _early(ctx: Context) -> dict[Op, Op]:
    """Scheduler steps that an optimizer step of their optimizer follows in the same
    iteration, before that optimizer stepped: the state before each optimizer step says."""
    found: dict[Op, Op] = {}
    for occurrence in ctx.engine.all_occurrences(OpKind.STEP):
        optimizer = target(ctx.engine, occurrence)
        for scheduler, owner, _ in occurrence.state.schedules:
            if owner is None or optimizer is None or relation(owner, optimizer) is not Relation.DIFFERENT:
                found.setdefault(scheduler, occurrence.op)
    return found


def _message(scheduler: Op, step: Op) -> str:
    name = call_text(scheduler.target, scheduler.module) if scheduler.target is not None else "scheduler"
    optimizer = call_text(step.target, step.module) if step.target is not None else "the optimizer"
    return (
        f"{name}.step() runs before {optimizer}.step() ({step.module.where(step.node)}) in the same "
        "iteration: the first value of the schedule is skipped and every later LR comes one step early"
    )
