from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.submodules import unregistered
from trainlint.analysis.training import call_text
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class SubmodulesInPlainList(Rule):
    code = "TL406"
    name = "submodules-in-plain-list"
    severity = Severity.ERROR
    summary = "nn.Module instances kept in a plain list/dict attribute are not registered as submodules."
    message = "modules in a plain list/dict are not registered: parameters(), .to(), state_dict() and the optimizer never see them"
    hint = "Hold them in nn.ModuleList([...]) (or nn.ModuleDict({...}) for a dict)."
    triggers = ("Module",)

    def check(self, ctx: Context) -> Iterator[Report]:
        model = ctx.model
        for found in unregistered(model, ctx.evaluator):
            container = "nn.ModuleDict" if isinstance(found.source, (cst.Dict, cst.DictComp)) or _dict_call(found.source) else "nn.ModuleList"
            kind = "dict" if container == "nn.ModuleDict" else "tuple" if isinstance(found.source, cst.Tuple) else "list"
            yield Report(
                found.assignment.value,
                message=(
                    f"`self.{found.attr}` keeps modules such as `{call_text(found.built.func, model)}(...)` in a plain {kind}: "
                    "they are not registered as submodules, so model.parameters() (and the optimizer), .to(device), "
                    "state_dict() and train()/eval() never see them; their weights are never trained nor saved"
                ),
                hint=f"Use {container}(...) instead of a plain {kind}.",
            )


def _dict_call(source: cst.BaseExpression) -> bool:
    return isinstance(source, cst.Call) and isinstance(source.func, cst.Name) and source.func.value == "dict"
