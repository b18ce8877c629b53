from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.model_summary import has_mode_layers
from trainlint.analysis.module import Loop, ModuleModel
from trainlint.analysis.modes import Mode, Modes, ModeSwitch, model_expression, model_name, modes_for
from trainlint.analysis.names import dotted
from trainlint.analysis.values import Obj
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
    triggers = ("no_grad", "inference_mode", "loader", "_dl")

    def check(self, ctx: Context) -> Iterator[Report]:
        modes = modes_for(ctx.evaluator, ctx.flow)
        reported: set[int] = set()
        for loop in ctx.model.loops:
            call = modes.evaluation_call(loop, ctx.model)
            if call is None or id(call) in reported:
                continue
            switch = modes.mode_at(call, ctx.model)
            if switch is None and _loaded_in_eval_mode(call, ctx):
                continue
            if not _in_eval_mode(switch, loop, ctx.model, modes) and _mode_matters(call, ctx):
                reported.add(id(call))
                yield Report(call, message=_message(call, switch))


def _in_eval_mode(switch: ModeSwitch | None, loop: Loop, module: ModuleModel, modes: Modes) -> bool:
    """Eval (or unknown) mode, or a ``model.train()`` written before the loop on purpose
    (Monte-Carlo dropout, recomputing batch-norm statistics) with no training in between;
    ``None`` means never switched: training mode."""
    if switch is None:
        return False
    if switch.mode is not Mode.TRAIN:
        return True
    return (
        switch.direct
        and switch.module is module
        and switch.call is not None
        and not modes.trains_between(switch.call, loop, module)
    )


def _loaded_in_eval_mode(call: cst.Call, ctx: Context) -> bool:
    """``from_pretrained`` (transformers, diffusers) returns a model already in eval mode."""
    target = model_expression(call)
    values = ctx.evaluator.eval(target, ctx.model) if target is not None else ()
    return bool(values) and all(isinstance(v, Obj) and v.qualname.endswith(".from_pretrained") for v in values)


def _mode_matters(call: cst.Call, ctx: Context) -> bool:
    """False only when every layer of the model is known and none depends on the mode."""
    target = model_expression(call)
    return target is None or has_mode_layers(ctx.evaluator.eval(target, ctx.model), ctx.evaluator) is not False


def _message(call: cst.Call, switch: ModeSwitch | None) -> str:
    name = model_name(call)
    if switch is not None and switch.call is not None and switch.module is not None:
        callee = dotted(switch.call.func) or "the call"
        cause = f"`{callee}()` at {switch.module.where(switch.call)} leaves it in training mode"
    else:
        cause = "nothing on the way here calls model.eval()"
    return (
        f"`{name}` runs in an evaluation loop in training mode: {cause}; dropout stays active and "
        "batch norm normalizes with (and updates) batch statistics, so the metrics are wrong"
    )
