from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.engine import LoopFacts
from trainlint.analysis.ir import OpKind
from trainlint.analysis.names import terminal_name
from trainlint.analysis.training import model_calls, model_name, modes_at
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
    # The model may be switched to eval mode in another file than the loop.
    triggers = ("eval", "train(False)", "train(mode=False)", "valid", "test", "loader")

    def check(self, ctx: Context) -> Iterator[Report]:
        if ctx.model.is_test:
            return  # tests run models on fixed inputs to compare outputs, not to evaluate them
        reported: set[int] = set()
        for loop in ctx.engine.loops(ctx.model):
            calls = model_calls(ctx.engine, loop)
            if not calls or _wants_gradients(loop, ctx):
                continue
            call = calls[0]
            node = call.call if call.module is ctx.model else call.anchor
            # On some path the model is certainly in eval mode with gradients on.
            evaluated = any(
                values and all(v.mode == "eval" for v in values) and snapshot.state.grad == frozenset({"on"})
                for snapshot, values in modes_at(ctx.engine, call)
            )
            if evaluated and id(node) not in reported:
                reported.add(id(node))
                yield Report(
                    node,
                    message=(
                        f"`{model_name(call.call)}` is evaluated (eval mode, no backward) without torch.no_grad(): autograd "
                        "keeps every activation of the forward pass, so evaluation uses far more memory than it needs"
                    ),
                )


def _wants_gradients(loop: LoopFacts, ctx: Context) -> bool:
    """A backward pass or step, or explicit gradient work, anywhere in the iteration."""
    if any(op.kind in (OpKind.BACKWARD, OpKind.STEP, OpKind.CLEAR) for op in ctx.engine.iteration_ops(loop)):
        return True
    node = loop.loop.node
    body = node.body if isinstance(node, (cst.For, cst.While, cst.FunctionDef)) else node
    return any(_uses_gradients(call) for call in ctx.model.within(ctx.model.calls, body))


def _uses_gradients(call: cst.Call) -> bool:
    """``x.requires_grad_()``, ``torch.autograd.grad(...)``, ``with torch.enable_grad():``."""
    return terminal_name(call.func) in GRADIENT_USES or any(
        arg.keyword is not None and arg.keyword.value == "requires_grad" and literal_value(arg.value) is True
        for arg in call.args
    )
