from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.schedules import STEP, Schedules
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class PerEpochSchedulerSteppedPerBatch(Rule):
    code = "TL301"
    name = "per-epoch-scheduler-stepped-per-batch"
    severity = Severity.ERROR
    summary = "A scheduler sized in epochs is stepped after every batch."
    message = "a scheduler sized in epochs is stepped once per batch"
    hint = "Move scheduler.step() out of the batch loop, after it in the epoch loop (or size the schedule in steps)."
    # Only the argument-less step() is judged; the scheduler may be built in another file.
    triggers = (".step()",)

    def check(self, ctx: Context) -> Iterator[Report]:
        schedules = Schedules(ctx.evaluator, ctx.engine)
        for misstep in schedules.missteps(ctx.model, STEP):
            yield Report(
                misstep.call,
                message=(
                    f"{misstep.label} built at {misstep.built_at} counts epochs ({misstep.intent.evidence}), "
                    "but this step() runs once per batch: the whole schedule is spent within the first "
                    "epoch or so and the LR collapses early"
                ),
            )
