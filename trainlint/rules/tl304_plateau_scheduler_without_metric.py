from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.schedules import Schedules, is_plateau, receiver, step_calls
from trainlint.analysis.values import call_arg
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class PlateauSchedulerWithoutMetric(Rule):
    code = "TL304"
    name = "plateau-scheduler-without-metric"
    severity = Severity.ERROR
    summary = "ReduceLROnPlateau.step() is called without the metric it monitors."
    message = "ReduceLROnPlateau.step() is called without a metric"
    hint = "Pass the monitored value, e.g. scheduler.step(val_loss), once per validation."
    # The scheduler may be built in another file than the one stepping it.
    triggers = (".step(",)

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
