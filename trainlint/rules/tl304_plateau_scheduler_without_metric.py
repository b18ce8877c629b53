from __future__ import annotations

import re
from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.schedules import Schedules, is_plateau, receiver, step_calls
from trainlint.analysis.values import call_arg
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety
from trainlint.rule import Context, Report, Rule

METRIC_NAME = re.compile(r"^(?:val|valid|validation|eval|dev)_?(?:loss|metric|score|acc|accuracy)$")


class PlateauSchedulerWithoutMetric(Rule):
    code = "TL304"
    name = "plateau-scheduler-without-metric"
    severity = Severity.ERROR
    summary = "ReduceLROnPlateau.step() is called without the metric it monitors."
    message = "ReduceLROnPlateau.step() is called without a metric"
    hint = "Pass the monitored value, e.g. scheduler.step(val_loss), once per validation."
    # The scheduler may be built in another file than the one stepping it.
    triggers = (".step(",)
    # ``plateau.step()`` -> ``plateau.step(val_loss)``, only when the metric is evident:
    # exactly one variable of the enclosing function (or module) is named like a validation
    # metric and is assigned before the call. Unsafe: the call no longer raises, and whether
    # that metric should be minimised is the scheduler's ``mode``, which is not checked.
    fix_safety = FixSafety.UNSAFE

    def check(self, ctx: Context) -> Iterator[Report]:
        schedules = Schedules(ctx.evaluator, ctx.engine)
        for call in step_calls(ctx.model):
            if call_arg(call, 0, "metrics") is not None or any(arg.star for arg in call.args):
                continue
            candidates = schedules.schedulers(receiver(call), ctx.model)
            # A receiver that may also be another scheduler is usually dispatched on its type.
            if candidates and all(is_plateau(obj) for obj in candidates):
                yield Report(
                    call,
                    message=(
                        f"ReduceLROnPlateau built at {candidates[0].module.where(candidates[0].call)} "
                        "is stepped without the metric it monitors: `metrics` is its required first argument, "
                        "so this call raises, and the LR can never react to a plateau"
                    ),
                )

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        if not isinstance(node, cst.Call) or node.args:
            return None
        candidates = _metrics_before(node, ctx.model)
        if len(candidates) != 1:
            return None
        return Fix([Edit(node, node.with_changes(args=[cst.Arg(cst.Name(candidates.pop()))]))])


def _metrics_before(call: cst.Call, model: ModuleModel) -> set[str]:
    scope = model.scope_of(call)
    position = model.order_of(call, 0)
    return {
        name
        for name, bindings in scope.bindings.items()
        if METRIC_NAME.match(name)
        and any(b.kind == "assign" and model.order_of(b.node, position) < position for b in bindings)
    }
