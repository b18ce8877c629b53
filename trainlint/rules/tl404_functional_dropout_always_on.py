from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted
from trainlint.analysis.values import call_arg, literal_value
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule

# Functional dropouts: (input, p, training, inplace), ``training`` defaulting to True.
FUNCTIONAL_DROPOUTS = frozenset(
    f"torch.nn.functional.{name}"
    for name in ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")
)
# ``torch.dropout(input, p, train)``: ``train`` is required, so only a literal True is wrong.
TORCH_DROPOUTS = frozenset(
    f"torch.{name}" for name in ("dropout", "alpha_dropout", "feature_dropout", "feature_alpha_dropout")
)

DROPOUT_NAMES = frozenset(qualname.rsplit(".", 1)[1] for qualname in FUNCTIONAL_DROPOUTS | TORCH_DROPOUTS)


class FunctionalDropoutAlwaysOn(Rule):
    code = "TL404"
    name = "functional-dropout-always-on"
    severity = Severity.WARNING
    summary = "F.dropout inside a module without training=self.training stays active in eval mode."
    message = "F.dropout defaults to training=True, so this dropout keeps dropping activations after model.eval()"
    hint = "Pass training=self.training, or use an nn.Dropout submodule, which follows model.train()/model.eval()."
    triggers = ("dropout",)

    def check(self, ctx: Context) -> Iterator[Report]:
        model = ctx.model
        for name in DROPOUT_NAMES:
            for call in model.calls_by_name.get(name, []):
                if _always_on(call, ctx) and _in_module_method(call, model) and not _disabled(call, ctx):
                    yield Report(call, message=_message(call))


def _always_on(call: cst.Call, ctx: Context) -> bool:
    """A library dropout call whose training flag is missing or literally True."""
    callee = ctx.evaluator.callee(call, ctx.model)
    if callee & FUNCTIONAL_DROPOUTS:
        flag = call_arg(call, 2, "training")
        return flag is None or literal_value(flag) is True
    if callee & TORCH_DROPOUTS:
        flag = call_arg(call, 2, "train")
        return flag is not None and literal_value(flag) is True
    return False


def _message(call: cst.Call) -> str:
    name = dotted(call.func) or "dropout"
    how = "training=True" if call_arg(call, 2, "training") or call_arg(call, 2, "train") else "its default training=True"
    return f"{name}(...) runs with {how}, so dropout stays active after model.eval() and evaluation outputs are randomly perturbed"


def _in_module_method(call: cst.Call, model: ModuleModel) -> bool:
    """Inside a method of a class that derives from something (an ``nn.Module`` has
    ``self.training``; a plain helper class may want dropout on purpose)."""
    for ancestor in model.ancestors(call):
        if isinstance(ancestor, cst.FunctionDef):
            cls = model.method_class(ancestor)
            if cls is not None:
                return bool(cls.bases)
    return False


def _disabled(call: cst.Call, ctx: Context) -> bool:
    """p is literally 0, or the call only runs under a test of ``training``
    (``if self.training:``, ``... if self.training else x``)."""
    p = call_arg(call, 1, "p")
    if p is not None and ctx.evaluator.number(p, ctx.model) == 0:
        return True
    for ancestor in ctx.model.ancestors(call):
        if isinstance(ancestor, cst.FunctionDef):
            return False
        if isinstance(ancestor, (cst.If, cst.IfExp)) and _mentions_training(ancestor.test):
            return True
    return False


def _mentions_training(test: cst.BaseExpression) -> bool:
    """``self.training``, ``not self.training``, ``self.training and self.p > 0``..."""
    if isinstance(test, cst.UnaryOperation):
        return _mentions_training(test.expression)
    if isinstance(test, cst.BooleanOperation):
        return _mentions_training(test.left) or _mentions_training(test.right)
    name = dotted(test)
    return name is not None and name.split(".")[-1] == "training"
