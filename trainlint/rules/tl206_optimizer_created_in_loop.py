from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.brains import torch as T
from trainlint.analysis.engine import Engine, LoopFacts, Occurrence
from trainlint.analysis.ir import OpKind
from trainlint.analysis.names import dotted, terminal_name
from trainlint.analysis.training import (
    call_text,
    innermost_loop,
    optimized_models,
    rebuilt_in_iteration,
    runs_every_iteration,
    stepped_optimizers,
    target,
)
from trainlint.analysis.values import call_arg, literal_value
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class OptimizerCreatedInLoop(Rule):
    code = "TL206"
    name = "optimizer-created-in-loop"
    severity = Severity.ERROR
    summary = "An optimizer is built inside the epoch or batch loop over parameters that persist: its state (Adam moments, momentum) restarts every time."
    message = "the optimizer is rebuilt on every iteration, so its running state starts from zero each time"
    hint = "Build the optimizer once, before the loop; change the learning rate with a scheduler or through optimizer.param_groups."
    triggers = ("optim", "Optimizer", "Adam", "SGD")

    def check(self, ctx: Context) -> Iterator[Report]:
        engine = ctx.engine
        reported: set[int] = set()
        for occurrence in engine.occurrences(ctx.model, OpKind.NEW_OPTIMIZER):
            loop = innermost_loop(engine, occurrence)
            if loop is None or not _rebuilt_each_iteration(engine, occurrence, loop):
                continue
            models = _persistent_models(engine, occurrence, loop)
            node = occurrence.anchor_in(ctx.model)
            if models and id(node) not in reported:
                reported.add(id(node))
                yield Report(node, message=_message(occurrence, models))


def _rebuilt_each_iteration(engine: Engine, occurrence: Occurrence, loop: LoopFacts) -> bool:
    """Built on every iteration of an epoch or batch loop, keeping state, and stepped in
    that loop. A loop over folds, settings or stages (not a counter, not data) starts a
    new run on purpose."""
    if not (engine.is_batch_loop(loop) or (engine.is_epoch_loop(loop) and _counts(loop))):
        return False
    if not _keeps_state(occurrence.op.node) or not runs_every_iteration(engine, occurrence, loop):
        return False
    built = occurrence.op.node
    return any(key.built_at(built) for key in (target(engine, step) for step in stepped_optimizers(engine, loop)) if key is not None)


def _counts(loop: LoopFacts) -> bool:
    """``for epoch in range(n)`` (also through ``tqdm``/``enumerate``), ``while``."""
    node = loop.loop.node
    if isinstance(node, cst.While):
        return True
    expr: cst.BaseExpression | None = node.iter if isinstance(node, cst.For) else None
    while isinstance(expr, cst.Call):
        if terminal_name(expr.func) in ("range", "trange", "count"):
            return True
        expr = expr.args[0].value if expr.args else None
    return False


def _keeps_state(call: cst.CSTNode) -> bool:
    """Plain SGD (no momentum) keeps nothing between steps: rebuilding it loses nothing."""
    if not isinstance(call, cst.Call):
        return True
    argument = T.STATE_ARGUMENTS.get(terminal_name(call.func) or "")
    if argument is None:
        return True
    value = call_arg(call, argument[1], argument[0])
    return value is not None and literal_value(value) not in (0, 0.0)


def _persistent_models(engine: Engine, occurrence: Occurrence, loop: LoopFacts) -> list[cst.BaseExpression]:
    """The modules the optimizer trains, when every one outlives the iteration (k-fold
    and sweep loops build a new model in the iteration)."""
    op = occurrence.op
    models = optimized_models(op.target, op.module, engine) if op.target is not None else None
    if not models or any(rebuilt_in_iteration(engine, occurrence, loop, model) for model in models):
        return []
    return models


def _message(occurrence: Occurrence, models: list[cst.BaseExpression]) -> str:
    op = occurrence.op
    built = call_text(op.node.func, op.module) if isinstance(op.node, cst.Call) else "the optimizer"
    names = ", ".join(f"`{dotted(m) or call_text(m, op.module)}`" for m in models)
    return (
        f"`{built}(...)` builds a new optimizer on every iteration over the parameters of {names}, which carry over: "
        "its momentum buffers / Adam moment estimates restart from zero each time, so the optimizer never "
        "accumulates the statistics it relies on (and Adam takes its large bias-corrected first steps again)"
    )
