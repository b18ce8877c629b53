from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis import catalog
from trainlint.analysis.model_summary import has_mode_layers
from trainlint.analysis.module import Loop, ModuleModel
from trainlint.analysis.modes import Mode, Modes, ModeSwitch, model_expression, model_name, modes_for
from trainlint.analysis.names import dotted, terminal_name
from trainlint.analysis.values import ClassRef, Instance, Obj
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
            if switch is None and (_loaded_in_eval_mode(call, ctx) or _opaque_model(call, ctx)):
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
    """``from_pretrained`` (transformers, diffusers) returns a model already in eval mode,
    and so does an inference wrapper whose constructor puts what it loads in eval mode
    (YOLOv5's ``DetectMultiBackend``: the wrapper's own flag is never read)."""
    target = model_expression(call)
    values = ctx.evaluator.eval(target, ctx.model) if target is not None else ()
    return bool(values) and all(
        (isinstance(v, Obj) and v.qualname.endswith(".from_pretrained"))
        or (isinstance(v, Instance) and _constructor_calls_eval(v, ctx))
        for v in values
    )


# Methods that return the module they are called on; ``.train()`` also does, but changes its mode.
_SAME_MODULE = catalog.PASS_THROUGH_METHODS - {"train"}


def _opaque_model(call: cst.Call, ctx: Context) -> bool:
    target = model_expression(call)
    return target is not None and _opaque_origin(target, ctx.model, ctx)


def _opaque_origin(expr: cst.BaseExpression, module: ModuleModel, ctx: Context, depth: int = 0) -> bool:
    """The model comes only from places whose mode is unknown or eval: a ``self.unet`` that no
    method assigns (diffusers' ``register_modules``, ``setattr``), or any ``from_pretrained``,
    directly or through local names and attributes. Parameters are not opaque: a function
    without visible callers is taken to start in training mode."""
    if depth > 4:
        return False
    if isinstance(expr, cst.Call):
        if isinstance(expr.func, cst.Attribute) and expr.func.attr.value in _SAME_MODULE:
            return _opaque_origin(expr.func.value, module, ctx, depth + 1)
        return terminal_name(expr.func) == "from_pretrained"
    if isinstance(expr, cst.Name):
        bindings = module.scope_of(expr).bindings.get(expr.value, [])
        return bool(bindings) and all(
            b.kind == "assign" and b.value is not None and _opaque_origin(b.value, module, ctx, depth + 1)
            for b in bindings
        )
    if isinstance(expr, cst.Attribute) and isinstance(expr.value, cst.Name) and expr.value.value == "self":
        instance = _self_instance(expr, module)
        return instance is not None and all(
            _opaque_origin(value, owner, ctx, depth + 1)
            for value, _, owner in ctx.evaluator.attribute_values(instance, expr.attr.value)
        )
    return False


def _self_instance(attribute: cst.Attribute, module: ModuleModel) -> Instance | None:
    """The ``self`` of the method around ``attribute``; ``None`` outside a method."""
    cls = next(
        (module.method_class(a) for a in module.ancestors(attribute) if isinstance(a, cst.FunctionDef) and module.method_class(a)),
        None,
    )
    return Instance(ClassRef(module, cls)) if cls is not None else None


def _constructor_calls_eval(instance: Instance, ctx: Context) -> bool:
    """``__init__`` calls ``.eval()``, itself or in a function it calls (a loader)."""
    init = ctx.evaluator.method(instance.cls, "__init__")
    if init is None:
        return False
    calls = init.module.calls_by_function.get(init.node, [])
    if any(terminal_name(c.func) == "eval" for c in calls):
        return True
    return any(
        terminal_name(inner.func) == "eval"
        for c in calls
        for loader in ctx.evaluator.functions_called(c, init.module)
        for inner in loader.module.calls_by_function.get(loader.node, [])
    )


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
