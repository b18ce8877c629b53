from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from trainlint.analysis.flow import Action, Event, Path
from trainlint.analysis.training import Clearing, call_text
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


@dataclass(frozen=True)
class Stale:
    """A step of ``optimizer`` that runs on gradients not cleared in its iteration."""

    optimizer: str
    backward: Event
    clear: Event | None  # a clear that runs on some iterations only, if there is one


class MissingZeroGrad(Rule):
    code = "TL201"
    name = "missing-zero-grad"
    severity = Severity.ERROR
    summary = "A training loop steps the optimizer without clearing gradients on every iteration."
    message = "gradients are not cleared between iterations, so backward() adds to the previous batches' gradients"
    hint = "Call optimizer.zero_grad() (or model.zero_grad()) once per iteration, before backward() or right after step()."
    # The backward may live in a helper of another file; the loop's file still steps.
    triggers = ("backward", ".step(")

    def check(self, ctx: Context) -> Iterator[Report]:
        reported: set[int] = set()
        for _, body in ctx.flow.training_loops(ctx.model):
            paths = ctx.flow.paths(body)
            clearing = Clearing(ctx.flow, paths)
            for stale in _stale_steps(paths, clearing):
                node = stale.backward.anchor
                if id(node) not in reported:
                    reported.add(id(node))
                    yield Report(node, message=_message(stale, ctx))


def _stale_steps(paths: list[Path], clearing: Clearing) -> Iterator[Stale]:
    """Per stepped optimizer: flag when some iteration steps without clearing and either
    no iteration clears at all, or the step runs on every iteration that runs backward
    while the clear does not (a clear under ``if i == 0:``). When both are conditional it is
    gradient accumulation, which is correct."""
    steps = {e.receiver or "optimizer": e for path in paths for e in path if e.action is Action.STEP}
    backward_paths = [path for path in paths if any(e.action is Action.BACKWARD for e in path)]
    for optimizer, step in steps.items():
        uncovered = [path for path in paths if _stale_backward(path, step, clearing) is not None]
        if not uncovered:
            continue
        clears = [e for path in paths for e in path if e.action is Action.CLEAR and clearing.covers(e, step)]
        always_steps = all(_steps(path, step) for path in backward_paths)
        if clears and not always_steps:
            continue
        backward = _stale_backward(uncovered[0], step, clearing)
        assert backward is not None
        yield Stale(optimizer, backward, clears[0] if clears else None)


def _steps(path: Path, step: Event) -> bool:
    return any(e.action is Action.STEP and e.receiver == step.receiver for e in path)


def _stale_backward(path: Path, step: Event, clearing: Clearing) -> Event | None:
    """The first backward feeding a step of ``step``'s optimizer on ``path`` when nothing on
    the path clears that optimizer's gradients."""
    if any(e.action is Action.CLEAR and clearing.covers(e, step) for e in path):
        return None
    pending: Event | None = None
    for event in path:
        if event.action is Action.BACKWARD and pending is None:
            pending = event
        elif event.action is Action.STEP:
            if event.receiver == step.receiver and pending is not None:
                return pending
            pending = None  # an earlier backward fed a different optimizer's step
    return None


def _message(stale: Stale, ctx: Context) -> str:
    backward = call_text(stale.backward.anchor, ctx.model)
    if stale.clear is None:
        return (
            f"`{backward}` runs every iteration but the gradients of `{stale.optimizer}` are never cleared in the loop, "
            f"so they accumulate across iterations and `{stale.optimizer}.step()` applies their running sum"
        )
    where = ctx.model.line_of(stale.clear.anchor)
    return (
        f"the gradients of `{stale.optimizer}` are cleared only on some iterations (line {where}) but `{stale.optimizer}.step()` "
        f"runs on every one, so `{backward}` accumulates into the gradients of earlier iterations"
    )
