from __future__ import annotations

from collections.abc import Iterator

from trainlint.analysis.dropout import DropoutCall, dropout_calls, ignores_mode, mode_blind_masks
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class DropoutActiveInEval(Rule):
    code = "TL606"
    name = "dropout-active-in-eval"
    severity = Severity.WARNING
    summary = "Attention dropout_p or a hand-written dropout ignores self.training: it stays on after model.eval()."
    message = "this dropout ignores the module's mode, so it keeps dropping after model.eval()"
    hint = "Switch it off outside training: dropout_p=self.p if self.training else 0.0, or return the input unchanged when not self.training."
    triggers = ("drop", "Drop", "memory_efficient_attention", "StochasticDepth")

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


def _rate_message(dropout: DropoutCall, ctx: Context) -> str:
    function = dropout.qualname.rsplit(".", 1)[-1]
    rate = dropout.rate
    assert rate is not None, "ignores_mode requires a rate"
    text = ctx.model.tree.code_for_node(rate).strip()
    return (
        f"{function}(...) drops attention weights with rate {text} whatever the module's mode: unlike nn.Dropout it "
        "does not read self.training, so evaluation and inference outputs are randomly perturbed"
    )
