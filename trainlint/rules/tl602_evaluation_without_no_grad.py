from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.module import Loop
from trainlint.analysis.modes import Mode, model_name, modes_for
from trainlint.analysis.names import terminal_name
from trainlint.analysis.values import literal_value
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule

# Signs that a loop wants gradients on purpose: saliency maps, adversarial examples.
GRADIENT_USES = frozenset({"requires_grad_", "grad", "enable_grad", "backward"})


class EvaluationWithoutNoGrad(Rule):
    code = "TL602"
    name = "evaluation-without-no-grad"
    severity = Severity.WARNING
    summary = "An evaluation loop (model in eval mode, no backward) records autograd graphs."
    message = "the evaluation loop runs without torch.no_grad(): activations are kept for a backward that never comes"
    hint = "Wrap the evaluation in `with torch.no_grad():` (or torch.inference_mode()), or decorate the function with @torch.no_grad()."
    triggers = (".eval()", "train(False)", "train(mode=False)")

    def check(self, ctx: Context) -> Iterator[Report]:
        modes = modes_for(ctx.evaluator, ctx.flow)
        reported: set[int] = set()
        for loop in ctx.model.loops:
            calls = modes.model_calls(loop, ctx.model)
            if not calls or id(calls[0]) in reported or _wants_gradients(loop, ctx):
                continue
            switch = modes.mode_at(calls[0], ctx.model)
            if switch is not None and switch.mode is Mode.EVAL and not modes.grad_disabled(calls[0], ctx.model):
                reported.add(id(calls[0]))
                yield Report(calls[0], message=_message(calls[0]))


def _wants_gradients(loop: Loop, ctx: Context) -> bool:
    """A backward pass or step, or explicit gradient work, anywhere in the iteration."""
    if next(ctx.flow.events(ctx.flow.loop_body(loop, ctx.model)), None) is not None:
        return True
    return any(_uses_gradients(call) for call in ctx.model.calls if ctx.model.is_within(call, loop.body))


def _uses_gradients(call: cst.Call) -> bool:
    """``x.requires_grad_()``, ``torch.autograd.grad(...)``, ``with torch.enable_grad():``."""
    return terminal_name(call.func) in GRADIENT_USES or any(
        arg.keyword is not None and arg.keyword.value == "requires_grad" and literal_value(arg.value) is True
        for arg in call.args
    )


def _message(call: cst.Call) -> str:
    name = model_name(call)
    return (
        f"`{name}` is evaluated (eval mode, no backward) without torch.no_grad(): autograd keeps every "
        "activation of the forward pass, so evaluation uses far more memory than it needs"
    )
