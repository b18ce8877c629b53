from __future__ import annotations

from collections.abc import Iterator, Sequence

import libcst as cst

from trainlint.analysis.argparse_defaults import resolve_number
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted, name_uses
from trainlint.analysis.optimizers import OptimizerCall, optimizer_calls
from trainlint.analysis.values import call_arg, literal_value
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety
from trainlint.rule import Context, Report, Rule

ADAM = frozenset({"torch.optim.Adam", "torch.optim.adam.Adam"})
OLD, NEW = "Adam", "AdamW"
OPTIM_MODULES = frozenset({"torch.optim", "torch.optim.adam"})


class AdamWithL2WeightDecay(Rule):
    code = "TL402"
    name = "adam-with-l2-weight-decay"
    severity = Severity.WARNING
    summary = "torch.optim.Adam with weight_decay > 0 applies L2 regularisation, not decoupled weight decay."
    message = "Adam's weight_decay is an L2 term added to the gradient, which the adaptive step rescales"
    hint = "Use torch.optim.AdamW for decoupled weight decay (or set weight_decay=0 on Adam)."
    triggers = ("Adam",)
    # ``torch.optim.Adam(..., weight_decay=x)`` -> ``torch.optim.AdamW(...)`` (the import
    # too). Unsafe: AdamW decouples the decay from the gradient, which is the point, but it
    # changes the effective regularisation, so a tuned ``weight_decay`` needs re-tuning.
    fix_safety = FixSafety.UNSAFE

    def check(self, ctx: Context) -> Iterator[Report]:
        for optimizer in optimizer_calls(ctx.model, ctx.evaluator):
            if optimizer.qualname not in ADAM or _decoupled(optimizer.call):
                continue
            value = _nonzero_decay(optimizer, ctx)
            if value is not None:
                yield Report(
                    optimizer.call,
                    message=(
                        f"Adam with weight_decay={value:g} adds an L2 penalty to the gradient; Adam then divides it by "
                        "the running gradient magnitude, so parameters with large gradients are barely decayed"
                    ),
                )

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        if not isinstance(node, cst.Call):
            return None
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value == OLD:
            return Fix([Edit(func.attr, func.attr.with_changes(value=NEW))])
        statement = _importing(ctx.model, OLD) if isinstance(func, cst.Name) and func.value == OLD else None
        if statement is None:
            return None
        return Fix([Edit(func, func.with_changes(value=NEW)), Edit(statement, _import_fixed(statement, ctx.model))])


def _importing(model: ModuleModel, name: str) -> cst.ImportFrom | None:
    """The ``from torch.optim import Adam`` that binds ``name`` without an alias."""
    for binding in model.module_scope.bindings.get(name, []):
        statement = binding.node
        if (
            isinstance(statement, cst.ImportFrom)
            and statement.module is not None
            and dotted(statement.module) in OPTIM_MODULES
            and isinstance(statement.names, Sequence)
            and any(alias.asname is None and dotted(alias.name) == name for alias in statement.names)
        ):
            return statement
    return None


def _import_fixed(statement: cst.ImportFrom, model: ModuleModel) -> cst.ImportFrom:
    """The import naming ``AdamW``: instead of ``Adam`` when this call was its only use,
    else in addition to it (a linter would flag an unused import; a missing one breaks)."""
    assert isinstance(statement.names, Sequence)
    names = list(statement.names)
    if any(dotted(alias.name) == NEW for alias in names):
        return statement
    if name_uses(model.tree, OLD) == 2:  # the import itself and this call
        return statement.with_changes(
            names=[alias.with_changes(name=cst.Name(NEW)) if dotted(alias.name) == OLD else alias for alias in names]
        )
    last = names[-1]
    names[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    return statement.with_changes(names=[*names, cst.ImportAlias(name=cst.Name(NEW))])


def _nonzero_decay(optimizer: OptimizerCall, ctx: Context) -> float | None:
    """The first decay that certainly is not 0, over the argument or every group."""
    if optimizer.groups is None:
        candidates = [(optimizer.weight_decay, ctx.model)]
    else:
        candidates = [(g.decay, g.module) for g in optimizer.groups]
    for expr, module in candidates:
        if expr is not None:
            number = resolve_number(expr, module, ctx.evaluator)
            if number:
                return number
    return None


def _decoupled(call: cst.Call) -> bool:
    """PyTorch >= 2.6 accepts ``Adam(..., decoupled_weight_decay=True)``, which is AdamW."""
    flag = call_arg(call, None, "decoupled_weight_decay")
    return flag is not None and literal_value(flag) is not False
