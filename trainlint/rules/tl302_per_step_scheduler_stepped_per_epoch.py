from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.schedules import EPOCH, Schedules
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class PerStepSchedulerSteppedPerEpoch(Rule):
    code = "TL302"
    name = "per-step-scheduler-stepped-per-epoch"
    severity = Severity.ERROR
    summary = "A scheduler sized in optimizer steps is stepped once per epoch."
    message = "a scheduler sized in optimizer steps is stepped once per epoch"
    hint = "Call scheduler.step() right after optimizer.step() inside the batch loop (or size the schedule in epochs)."
    # Only the argument-less step() is judged; the scheduler may be built in another file.
    triggers = (".step()",)

    def check(self, ctx: Context) -> Iterator[Report]:
        schedules = Schedules(ctx.evaluator, ctx.engine)
        for misstep in schedules.missteps(ctx.model, EPOCH):
            yield Report(
                misstep.call,
                message=(
                    f"{misstep.label} built at {misstep.built_at} counts optimizer steps "
                    f"({misstep.intent.evidence}), but this step() runs once per epoch: warmup and decay "
                    "advance len(loader) times too slowly and the LR barely moves"
                ),
            )
