from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.models import is_model, is_model_class
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted, root_name
from trainlint.analysis.values import ClassRef, Evaluator
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class ForwardCalledDirectly(Rule):
    code = "TL802"
    name = "forward-called-directly"
    severity = Severity.WARNING
    summary = "model.forward(x) instead of model(x): forward/backward hooks (DDP, FSDP, AMP, user hooks) are skipped."
    message = "calling .forward() directly skips the hooks that nn.Module.__call__ runs"
    hint = "Call the module itself, model(x), so its hooks run; keep .forward() for super().forward() inside a subclass."
    triggers = (".forward(",)

    def check(self, ctx: Context) -> Iterator[Report]:
        model, ev = ctx.model, ctx.evaluator
        if model.is_test:
            return  # tests exercise forward() and load their own fixtures on purpose
        for call in model.calls_by_name.get("forward", []):
            func = call.func
            if not isinstance(func, cst.Attribute) or _own_method_call(func.value, call, model, ev):
                continue
            if is_model(func.value, model, ev):
                receiver = model.tree.code_for_node(func.value)
                yield Report(
                    call,
                    message=(
                        f"{receiver}.forward(...) bypasses {receiver}.__call__: the hooks registered on it "
                        "(your own, FSDP, quantization, pruning, activation checkpointing) do not run"
                    ),
                    hint=f"Call {receiver}(...) instead of {receiver}.forward(...).",
                )


def _own_method_call(receiver: cst.BaseExpression, call: cst.Call, model: ModuleModel, ev: Evaluator) -> bool:
    """``super().forward(x)``, ``Base.forward(self, x)``, and ``self.forward`` /
    ``self.<submodule>.forward`` inside the methods of an ``nn.Module`` (composing modules
    is the class's own business)."""
    if isinstance(receiver, cst.Call) and dotted(receiver.func) == "super":
        return True
    if any(isinstance(v, ClassRef) for v in ev.eval(receiver, model)) or dotted(receiver) == "nn.Module":
        return True
    if root_name(receiver) != "self":
        return False
    if isinstance(receiver, cst.Name):
        return True
    cls = model.method_class(model.enclosing_function(call))
    return cls is not None and is_model_class(ClassRef(model, cls), ev)
