from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.dropout import DropoutCall, dropout_calls, ignores_mode
from trainlint.analysis.names import dotted
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class FunctionalDropoutAlwaysOn(Rule):
    code = "TL404"
    name = "functional-dropout-always-on"
    severity = Severity.WARNING
    summary = "F.dropout inside a module without training=self.training stays active in eval mode."
    message = "F.dropout defaults to training=True, so this dropout keeps dropping activations after model.eval()"
    hint = "Pass training=self.training, or use an nn.Dropout submodule, which follows model.train()/model.eval()."
    triggers = ("dropout",)

    def check(self, ctx: Context) -> Iterator[Report]:
        for dropout in dropout_calls(ctx.model, ctx.evaluator, ("functional", "torch")):
            if ignores_mode(dropout, ctx.model, ctx.evaluator):
                yield Report(dropout.call, message=_message(dropout))


def _message(dropout: DropoutCall) -> str:
    name = dotted(dropout.call.func) or "dropout"
    how = "training=True" if dropout.flag is not None else "its default training=True"
    return f"{name}(...) runs with {how}, so dropout stays active after model.eval() and evaluation outputs are randomly perturbed"
