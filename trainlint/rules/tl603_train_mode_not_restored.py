from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.modes import Mode, Modes, Step, modes_for
from trainlint.analysis.names import dotted
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class TrainModeNotRestored(Rule):
    code = "TL603"
    name = "train-mode-not-restored"
    severity = Severity.ERROR
    summary = "Evaluation switches the model to eval mode and training resumes without model.train()."
    message = "after evaluation the model stays in eval mode, so the following epochs train without dropout and with frozen batch-norm statistics"
    hint = "Call model.train() at the start of each epoch (or of the train function), or at the end of the evaluation."
    triggers = (".eval()", "train(False)", "train(mode=False)")

    def check(self, ctx: Context) -> Iterator[Report]:
        modes = modes_for(ctx.evaluator, ctx.flow)
        # One report per eval switch, in the tightest loop that shows the problem: an epoch
        # loop inside ``main()`` is reported, not also a ``for seed in seeds: main()`` around it.
        tightest: dict[int, tuple[int, Step]] = {}
        for loop in ctx.model.loops:
            steps = modes.iteration_steps(loop, ctx.model)
            if not any(step.kind == "backward" for step in steps):
                continue
            for index, step in enumerate(steps):
                known = tightest.get(id(step.call))
                if (known is None or len(steps) < known[0]) and _unrestored_evaluation(steps, index, modes):
                    tightest[id(step.call)] = (len(steps), step)
        reported: set[int] = set()
        for _, step in tightest.values():
            if id(step.anchor) not in reported:
                reported.add(id(step.anchor))
                yield Report(step.anchor, message=_message(step))


def _unrestored_evaluation(steps: list[Step], index: int, modes: Modes) -> bool:
    """``steps[index]`` is an evaluation's ``model.eval()`` and the next backward pass of the
    loop (this iteration or, wrapping around, the next one) comes before any ``train()``."""
    step = steps[index]
    if step.kind != Mode.EVAL.value or not modes.evaluates_after(step.call, step.module):
        return False
    for later in (*steps[index + 1:], *steps[:index]):
        if later.kind == "backward":
            return True
        if later.kind != Mode.EVAL.value:
            return False  # train() or a switch to an unknown mode: assume it restores training
    return False


def _message(step: Step) -> str:
    switch = f"`{dotted(step.call.func) or 'model.eval'}()`"
    if step.anchor is step.call:
        where = f"{switch} here"
    else:
        where = f"`{dotted(step.anchor.func) or 'this call'}()` ({switch} at {step.module.where(step.call)})"
    return (
        f"{where} leaves the model in eval mode and the loop's next backward pass runs before any "
        "model.train(): later epochs train without dropout and with frozen batch-norm statistics"
    )
