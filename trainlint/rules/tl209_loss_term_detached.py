from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.brains import lightning as PL
from trainlint.analysis.detached import cut_by, loss_terms
from trainlint.analysis.ir import OpKind
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import terminal_name
from trainlint.analysis.training import call_text
from trainlint.analysis.values import ClassRef, literal_value, return_statements, unpacked
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


# Calls that may cut a value from the graph: a helper holding one is worth following.
CUTTING_NAMES = frozenset({"item", "detach", "detach_", "tolist", "numpy", "float", "int", "tensor", "as_tensor", "Tensor", "FloatTensor"})


class LossTermDetached(Rule):
    code = "TL209"
    name = "loss-term-detached"
    severity = Severity.ERROR
    summary = "A term of the backpropagated loss was cut from the graph (.item(), .detach(), float(), torch.tensor)."
    message = "this term of the loss was cut from the autograd graph, so it contributes no gradient"
    hint = (
        "Keep the term a tensor where it is built (no .item(), .detach(), float() or torch.tensor(...)); "
        "detach only stop-gradient targets, and call .item() for logging."
    )
    triggers = ("item", "detach", ".data", "float(", "tensor(", "Tensor(")

    def check(self, ctx: Context) -> Iterator[Report]:
        model, ev = ctx.model, ctx.evaluator
        reported: set[int] = set()
        for loss, backward in _backpropagated(ctx):
            terms = list(loss_terms(loss, model, ev))
            cuts = [(term, cut_by(term, model, ev)) for term in terms]
            whole = all(cut is not None for _, cut in cuts)
            for term, cut in cuts:
                if cut is not None and id(term) not in reported and not _cancels(cut, terms):
                    reported.add(id(term))
                    yield Report(term, message=_message(term, cut, whole, backward, model))


def _backpropagated(ctx: Context) -> Iterator[tuple[cst.BaseExpression, str]]:
    """Losses backpropagated in this file, with how: the operand of each backward (inside
    ``scaler.scale(...)``), and what a Lightning ``training_step`` returns."""
    model, engine = ctx.model, ctx.engine
    for op in engine.ops_in(model, OpKind.BACKWARD):
        operand = op.operand
        if isinstance(operand, cst.Call) and isinstance(operand.func, cst.Attribute) and operand.func.attr.value == "scale" and operand.args:
            operand = operand.args[0].value
        if operand is not None:
            yield operand, f"`{call_text(op.node, model)}`"
    for function in model.functions:
        if function.name.value in PL.TRAINING_HOOKS and _lightning_optimizes(function, ctx):
            for value in _returned_losses(function, model):
                yield value, f"{function.name.value}'s returned loss"
        elif _may_cut(function, model):
            yield from _returned_to_backward(function, ctx)


def _may_cut(function: cst.FunctionDef, model: ModuleModel) -> bool:
    """The function calls something that may cut a value from the graph (a cheap filter
    before its callers are looked for)."""
    return any(terminal_name(c.func) in CUTTING_NAMES for c in model.calls_by_function.get(function, []))


def _returned_to_backward(function: cst.FunctionDef, ctx: Context) -> Iterator[tuple[cst.BaseExpression, str]]:
    """What a helper returns (``return loss, parts``) when a caller backpropagates it
    (``loss, parts = compute_loss(out, y); loss.backward()``)."""
    engine, ev = ctx.engine, ctx.evaluator
    for call, caller in ev.call_sites(function, ctx.model):
        path = _backpropagated_path(call, caller, ctx)
        if path is None:
            continue
        for statement in return_statements(function):
            value = unpacked(statement.value, path) if statement.value is not None else None
            if value is not None:
                yield value, f"the caller `{call_text(call, caller)}` at {caller.where(call)}"


def _backpropagated_path(call: cst.Call, caller: ModuleModel, ctx: Context) -> tuple[int, ...] | None:
    """Where in the call's result the backpropagated loss is: ``()`` for the whole value,
    ``(0,)`` for ``loss, parts = call``; ``None`` when no backward of the caller uses it."""
    paths = ctx.engine.memo(("tl209_paths", id(caller)), lambda: _backpropagated_paths(caller, ctx))
    return paths.get(id(call))


def _backpropagated_paths(caller: ModuleModel, ctx: Context) -> dict[int, tuple[int, ...]]:
    """For every value a backward of ``caller`` backpropagates (a term of its loss, or what
    a term's name was assigned from), where the loss is in it; the first backward that
    uses a value decides (computed once per file: asked for every call site)."""
    paths: dict[int, tuple[int, ...]] = {}
    for op in ctx.engine.ops_in(caller, OpKind.BACKWARD):
        if op.operand is None:
            continue
        for term in loss_terms(op.operand, caller, ctx.evaluator):
            paths.setdefault(id(term), ())
            if isinstance(term, cst.Name):
                for binding in ctx.evaluator.reaching(term, caller):
                    if binding.value is not None and binding.kind == "assign":
                        paths.setdefault(id(binding.value), binding.path)
    return paths


def _lightning_optimizes(function: cst.FunctionDef, ctx: Context) -> bool:
    """A LightningModule's ``training_step`` under automatic optimization: Lightning
    backpropagates what it returns (ignite's and Hugging Face's step functions return
    values for logging)."""
    cls = ctx.model.method_class(function)
    if cls is None or not any(b.startswith(PL.ROOT_PREFIXES) for b in ctx.evaluator.base_qualnames(ClassRef(ctx.model, cls))):
        return False
    manual = ctx.model.self_attrs.get(cls, {}).get(PL.AUTOMATIC_OPTIMIZATION, [])
    return not any(literal_value(a.value) is False for a in manual)


def _returned_losses(function: cst.FunctionDef, model: ModuleModel) -> Iterator[cst.BaseExpression]:
    """``return loss`` / ``return {"loss": loss, ...}`` of a training hook."""
    for statement in return_statements(function):
        value = statement.value
        if isinstance(value, cst.Dict):
            for element in value.elements:
                if isinstance(element, cst.DictElement) and literal_value(element.key) == "loss":
                    yield element.value
        elif value is not None:
            yield value


def _cancels(cut: cst.BaseExpression, terms: list[cst.BaseExpression]) -> bool:
    """``y - y.detach()``: a detached copy cancels the value of a live term on purpose
    (a straight-through or score-function estimator)."""
    source = cut.value if isinstance(cut, cst.Attribute) else cut.func.value if isinstance(cut, cst.Call) and isinstance(cut.func, cst.Attribute) else None
    return source is not None and any(term is not cut and term.deep_equals(source) for term in terms)


def _message(term: cst.BaseExpression, cut: cst.BaseExpression, whole: bool, how: str, model: ModuleModel) -> str:
    line = model.line_of(cut)
    where = f"`{call_text(cut, model)}`" + (f" (line {line})" if line is not None and line != model.line_of(term) else "")
    if whole:
        return (
            f"the loss backpropagated by {how} is built by {where}, which has no autograd history: backward() "
            "computes no gradient for the model, and the optimizer steps on nothing"
        )
    return (
        f"`{call_text(term, model)}` is added to the loss backpropagated by {how}, but {where} cut it from the "
        "autograd graph: it only shifts the loss value and contributes no gradient, so this objective never trains anything"
    )
