"""Shared queries of the training-loop rules: which blocks to analyse, and whether a gradient-clearing call touches the optimizer a step applies."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.flow import Action, Event, Flow, Path, Seq
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted
from trainlint.analysis.values import FuncRef, call_arg

PARAMETER_METHODS = ("parameters", "named_parameters")


def step_blocks(flow: Flow, module: ModuleModel) -> Iterator[Seq]:
    """Functions that run backward and a step themselves (a ``train_step`` helper), then
    training-loop iterations. Functions come first so that an event written in a helper is
    reported in the helper rather than at the loop's call of it."""
    for function in module.functions:
        block = flow.function_block(FuncRef(module, function))
        direct = {e.action for e in flow.events(block, nested_loops=False)}
        if {Action.BACKWARD, Action.STEP} <= direct:
            yield block
    for _, body in flow.training_loops(module):
        yield body


def call_text(node: cst.CSTNode, module: ModuleModel) -> str:
    """Source text of a (short) node, for messages."""
    return module.tree.code_for_node(node).strip()


def is_zero_grad_call(event: Event) -> bool:
    """``x.zero_grad(...)``: clears every parameter it owns (``p.grad = None`` loops are
    often deliberately selective, e.g. freezing one layer)."""
    node = event.node
    return (
        isinstance(node, cst.Call)
        and isinstance(node.func, cst.Attribute)
        and node.func.attr.value == "zero_grad"
    )


class Clearing:
    """Decides whether a CLEAR event affects the optimizer a STEP event applies."""

    def __init__(self, flow: Flow, paths: list[Path]) -> None:
        self.flow = flow
        steps = [e for path in paths for e in path if e.action is Action.STEP]
        self.stepped = {e.receiver for e in steps if e.receiver}
        # The model whose parameters each stepped optimizer updates, when we can tell.
        self.owner = {e.receiver: self._trained_model(e) for e in steps if e.receiver}

    def covers(self, clear: Event, step: Event) -> bool:
        """False only when we know the clear is for a *different* optimizer or model of the
        same block (GANs, multi-optimizer setups); unknowns count as covering."""
        if clear.receiver is None or step.receiver is None or clear.receiver == step.receiver:
            return True
        if clear.receiver in self.stepped:
            return False
        owner = self.owner.get(step.receiver)
        others = {model for opt, model in self.owner.items() if opt != step.receiver and model}
        return not (owner and clear.receiver != owner and clear.receiver in others)

    def _trained_model(self, step: Event) -> str | None:
        """``netG`` for an optimizer built as ``Adam(netG.parameters(), ...)``."""
        receiver = _step_receiver_expr(step)
        if receiver is None:
            return None
        for obj in self.flow.ev.objects(receiver, step.module):
            params = call_arg(obj.call, 0, "params")
            if (
                isinstance(params, cst.Call)
                and isinstance(params.func, cst.Attribute)
                and params.func.attr.value in PARAMETER_METHODS
            ):
                return dotted(params.func.value)
        return None


def _step_receiver_expr(step: Event) -> cst.BaseExpression | None:
    """The optimizer expression of ``opt.step()`` or ``scaler.step(opt)``."""
    call = step.node
    if not isinstance(call, cst.Call) or not isinstance(call.func, cst.Attribute):
        return None
    return call_arg(call, 0, "optimizer") if step.via_scaler else call.func.value


