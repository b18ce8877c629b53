from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.engine import Snapshot
from trainlint.analysis.models import has_mode_layers
from trainlint.analysis.state import ModeV
from trainlint.analysis.training import ModelCall, evaluation_sites, model_expression, model_name, modes_at
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class EvaluationWithoutModelEval(Rule):
    code = "TL601"
    name = "evaluation-without-model-eval"
    severity = Severity.WARNING
    summary = "An evaluation loop runs the model in training mode (no model.eval() on the way)."
    message = "the model is evaluated in training mode: dropout stays active and batch norm uses batch statistics"
    hint = "Call model.eval() before the evaluation loop, and model.train() before training resumes."
    # An evaluation loop runs under no_grad/inference_mode or iterates a loader.
    # Evaluation runs under no_grad, walks a loader, or lives in an eval-named function.
    triggers = ("no_grad", "inference_mode", "loader", "_dl", "eval", "valid", "test")

    def check(self, ctx: Context) -> Iterator[Report]:
        if ctx.model.is_test:
            return  # tests run models on fixed inputs to compare outputs, not to evaluate them
        reported: set[int] = set()
        for call in evaluation_sites(ctx.engine, ctx.model):
            node = call.call if call.module is ctx.model else call.anchor
            training = _in_training_mode(modes_at(ctx.engine, call), call, node, ctx, certain_only=not ctx.model.enclosing_loops(call.call))
            if training is None or id(node) in reported or not _mode_matters(call, ctx):
                continue
            reported.add(id(node))
            yield Report(node, message=_message(call.call, training))


def _in_training_mode(
    modes: list[tuple[Snapshot, frozenset[ModeV]]], call: ModelCall, site: cst.CSTNode, ctx: Context, certain_only: bool
) -> frozenset[ModeV] | None:
    """The modes of a path on which the model is certainly in training mode (some call
    path or branch: ``if args.eval: evaluate(model)`` right after building it), unless the
    ``model.train()`` was written before the loop on purpose."""
    training = [values for _, values in modes if values and all(v.mode == "train" for v in values) and not _deliberate(values, site, ctx)]
    if not training:
        return None
    certain = [values for values in training if all(v.certain for v in values)]
    if certain:
        return certain[0]  # a path that certainly evaluates a model in training mode
    # Nothing known for sure: report only when no way here switches to eval (and for an
    # evaluation outside a loop, a sampling helper, only what is certain), and the model
    # does not come from callers outside the project (a library's evaluation helper).
    target = model_expression(call.call)
    external = target is not None and any(ctx.engine.from_unseen_caller(target, snapshot.frame) for snapshot, _ in modes)
    return training[0] if len(training) == len(modes) and not certain_only and not external else None


def _deliberate(values: frozenset[ModeV], site: cst.CSTNode, ctx: Context) -> bool:
    """A ``model.train()`` written before the evaluation in the same function, with no
    training in between: Monte-Carlo dropout, or recomputing batch-norm statistics."""
    function = ctx.model.enclosing_function(site)
    return all(
        value.origin is not None
        and not value.trained
        and value.origin.module is ctx.model
        and ctx.model.enclosing_function(value.origin.node) is function
        for value in values
    )


def _mode_matters(call: ModelCall, ctx: Context) -> bool:
    """False only when every layer of the model is known and none depends on the mode."""
    target = model_expression(call.call)
    return target is None or has_mode_layers(ctx.evaluator.eval(target, call.module), ctx.evaluator) is not False


def _message(call: cst.Call, values: frozenset[ModeV]) -> str:
    origins = [v.origin for v in values if v.origin is not None]
    if origins:
        switch = origins[0]
        callee = switch.module.tree.code_for_node(switch.node).strip()
        cause = f"`{callee}` at {switch.module.where(switch.node)} leaves it in training mode"
    else:
        cause = "nothing on the way here calls model.eval()"
    return (
        f"`{model_name(call)}` is evaluated in training mode: {cause}; dropout stays active and "
        "batch norm normalizes with (and updates) batch statistics, so the metrics are wrong"
    )
