from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.dropout import DropoutCall, dropout_calls, ignores_mode, mode_blind_masks
from trainlint.analysis.models import is_model_class
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted
from trainlint.analysis.values import ClassRef, Evaluator
from trainlint.analysis.walk import iter_children
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety
from trainlint.rule import Context, Report, Rule


class DropoutActiveInEval(Rule):
    code = "TL606"
    name = "dropout-active-in-eval"
    severity = Severity.WARNING
    summary = "Attention dropout_p or a hand-written dropout ignores self.training: it stays on after model.eval()."
    message = "this dropout ignores the module's mode, so it keeps dropping after model.eval()"
    hint = "Switch it off outside training: dropout_p=self.p if self.training else 0.0, or return the input unchanged when not self.training."
    triggers = ("drop", "Drop", "memory_efficient_attention", "StochasticDepth")
    # ``dropout_p=self.p`` -> ``dropout_p=self.p if self.training else 0.0``. Safe: offered
    # only inside a method of an ``nn.Module`` class, where ``self.training`` is the module's
    # mode. In training mode the rate is the same expression as before; in eval mode it is
    # 0, which is the fix. Unsafe where computing the rate calls code, which then no longer
    # runs in eval mode. Hand-written dropout modules are not rewritten (where to return the
    # input unchanged is a choice about their code).
    fix_safety = FixSafety.SAFE

    def check(self, ctx: Context) -> Iterator[Report]:
        for dropout in dropout_calls(ctx.model, ctx.evaluator, ("rate",)):
            if ignores_mode(dropout, ctx.model, ctx.evaluator):
                yield Report(dropout.call, message=_rate_message(dropout, ctx))
        for mask in mode_blind_masks(ctx.model, ctx.evaluator):
            cls = ctx.model.method_class(ctx.model.enclosing_function(mask))
            name = cls.name.value if cls is not None else "this module"
            yield Report(
                mask,
                message=(
                    f"{name}.forward draws a random drop mask without checking self.training: the dropout stays "
                    "active after model.eval(), so evaluation and inference outputs are randomly perturbed"
                ),
                hint="Return the input unchanged when not self.training (or the drop probability is 0), as nn.Dropout does.",
            )

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        dropout = next((d for d in dropout_calls(ctx.model, ctx.evaluator, ("rate",)) if d.call is node), None)
        receiver = _module_self(node, ctx.model, ctx.evaluator)
        if dropout is None or dropout.rate is None or receiver is None:
            return None
        return Fix([Edit(dropout.rate, _gated(dropout.rate, receiver))], None if _no_calls(dropout.rate) else FixSafety.UNSAFE)


def _no_calls(expr: cst.CSTNode) -> bool:
    """``expr`` runs no code of its own when evaluated (no call, walrus or await)."""
    if isinstance(expr, (cst.Call, cst.NamedExpr, cst.Await, cst.Yield)):
        return False
    return all(_no_calls(child) for child in iter_children(expr))


def _module_self(node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> str | None:
    """The name of ``self`` of the ``nn.Module`` method holding ``node``."""
    function = model.enclosing_function(node)
    cls = model.method_class(function)
    if function is None or cls is None or not is_model_class(ClassRef(model, cls), evaluator):
        return None
    params = [*function.params.posonly_params, *function.params.params]
    static = any(dotted(d.decorator) in ("staticmethod", "classmethod") for d in function.decorators)
    return params[0].name.value if params and not static else None


def _gated(rate: cst.BaseExpression, receiver: str) -> cst.BaseExpression:
    if isinstance(rate, (cst.IfExp, cst.Lambda, cst.NamedExpr)) and not rate.lpar:
        rate = rate.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    training = cst.Attribute(cst.Name(receiver), cst.Name("training"))
    return cst.IfExp(
        test=training,
        body=rate,
        orelse=cst.Float("0.0"),
        whitespace_before_if=cst.SimpleWhitespace(" "),
        whitespace_after_if=cst.SimpleWhitespace(" "),
        whitespace_before_else=cst.SimpleWhitespace(" "),
        whitespace_after_else=cst.SimpleWhitespace(" "),
    )


def _rate_message(dropout: DropoutCall, ctx: Context) -> str:
    function = dropout.qualname.rsplit(".", 1)[-1]
    rate = dropout.rate
    assert rate is not None, "ignores_mode requires a rate"
    text = ctx.model.tree.code_for_node(rate).strip()
    return (
        f"{function}(...) drops attention weights with rate {text} whatever the module's mode: unlike nn.Dropout it "
        "does not read self.training, so evaluation and inference outputs are randomly perturbed"
    )
