"""TL606: ``dropout_p=self.p`` → ``dropout_p=self.p if self.training else 0.0``.

Safe: offered only inside a method of an ``nn.Module`` class, where ``self.training`` is the
module's mode. In training mode the rate is the same expression as before; in eval mode it
is 0, which is the fix. Hand-written dropout modules are not rewritten (where to return the
input unchanged is a choice about their code).
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from trainlint.analysis.dropout import DropoutCall, dropout_calls
from trainlint.analysis.models import is_model_class
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted
from trainlint.analysis.values import ClassRef, Evaluator
from trainlint.fixes import Edit, Fixer, FixSafety


class GateAttentionDropoutFixer(Fixer):
    code = "TL606"
    safety = FixSafety.SAFE

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        dropout = next((d for d in dropout_calls(model, evaluator, ("rate",)) if d.call is node), None)
        receiver = _module_self(node, model, evaluator)
        if dropout is None or dropout.rate is None or receiver is None:
            return []
        return [Edit(dropout.rate, _gated(dropout, receiver))]


def _module_self(node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> str | None:
    """The name of ``self`` of the ``nn.Module`` method holding ``node``."""
    function = model.enclosing_function(node)
    cls = model.method_class(function)
    if function is None or cls is None or not is_model_class(ClassRef(model, cls), evaluator):
        return None
    params = [*function.params.posonly_params, *function.params.params]
    static = any(dotted(d.decorator) in ("staticmethod", "classmethod") for d in function.decorators)
    return params[0].name.value if params and not static else None


def _gated(dropout: DropoutCall, receiver: str) -> cst.BaseExpression:
    rate = dropout.rate
    assert rate is not None
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
