from __future__ import annotations

from collections.abc import Iterable, Iterator

import libcst as cst

from trainlint.analysis.flow import Action, Event, Path
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.schedules import Schedules, is_plateau, receiver, step_calls
from trainlint.analysis.values import Obj, Value, call_arg
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
        schedules = Schedules(ctx.evaluator, ctx.flow)
        for call in step_calls(ctx.model):
            # step(epoch) places the schedule explicitly, whatever the order.
            event = ctx.flow.classify(call, ctx.model)
            if call.args or event is None or event.action is not Action.SCHEDULER_STEP:
                continue
            schedulers = schedules.schedulers(receiver(call), ctx.model)
            # ReduceLROnPlateau follows a metric: its position in the iteration does not matter.
            if schedulers and all(is_plateau(obj) for obj in schedulers):
                continue
            later = self._later_step(call, schedulers, schedules, ctx.model)
            if later is not None:
                yield Report(call, message=self._message(call, later, ctx.model))

    def _later_step(
        self, call: cst.Call, schedulers: list[Obj], schedules: Schedules, module: ModuleModel
    ) -> Event | None:
        """An optimizer step of the scheduler's optimizer that follows ``call`` in the same
        iteration, on a path where that optimizer has not stepped yet."""
        for block in schedules.iteration_blocks(call, module):
            paths = schedules.flow.paths(block)
            pairing = _Pairing(schedules, schedulers, paths)
            for path in paths:
                found = _step_after(path, call, pairing)
                if found is not None:
                    return found
        return None

    @staticmethod
    def _message(call: cst.Call, step: Event, module: ModuleModel) -> str:
        scheduler = module.tree.code_for_node(receiver(call))
        optimizer = step.receiver or "the optimizer"
        return (
            f"{scheduler}.step() runs before {optimizer}.step() ({step.module.where(step.node)}) in the same "
            "iteration: the first value of the schedule is skipped and every later LR comes one step early"
        )


class _Pairing:
    """Decides whether an optimizer step belongs to the stepped scheduler's optimizer: by
    the optimizer objects when both are known, else only when the iteration steps a single
    optimizer (two optimizer/scheduler pairs are told apart, unknowns are not guessed)."""

    def __init__(self, schedules: Schedules, schedulers: list[Obj], paths: list[Path]) -> None:
        self.schedules = schedules
        self.owned = _identities(
            value
            for obj in schedulers
            for value in _evaluate(schedules, schedules.optimizer_of(obj), obj.module)
        )
        receivers = {e.receiver for path in paths for e in path if e.action is Action.STEP}
        self.single = len(receivers) == 1

    def owns(self, step: Event) -> bool:
        stepped = _identities(_evaluate(self.schedules, _stepped_optimizer(step), step.module))
        if self.owned and stepped:
            return bool(self.owned & stepped)
        return self.single


def _step_after(path: Path, call: cst.Call, pairing: _Pairing) -> Event | None:
    stepped_before = False
    for index, event in enumerate(path):
        if event.node is call:
            if stepped_before:
                return None
            return next((e for e in path[index + 1:] if e.action is Action.STEP and pairing.owns(e)), None)
        if event.action is Action.STEP and pairing.owns(event):
            stepped_before = True
    return None


def _stepped_optimizer(step: Event) -> cst.BaseExpression | None:
    """The optimizer of ``opt.step()`` or of ``scaler.step(opt)``."""
    node = step.node
    if not isinstance(node, cst.Call) or not isinstance(node.func, cst.Attribute):
        return None
    return call_arg(node, 0, "optimizer") if step.via_scaler else node.func.value


def _evaluate(schedules: Schedules, expr: cst.BaseExpression | None, module: ModuleModel) -> tuple[Value, ...]:
    return schedules.ev.eval(expr, module) if expr is not None else ()


def _identities(values: Iterable[Value]) -> set[int]:
    """Optimizer objects by the call that built them."""
    return {id(value.call) for value in values if isinstance(value, Obj)}
