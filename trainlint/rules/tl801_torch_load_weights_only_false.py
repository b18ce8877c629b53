from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted
from trainlint.analysis.values import Evaluator, call_arg, literal_value
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule

# Loaders that unpickle with ``weights_only``; the hub helper forwards it to torch.load.
UNPICKLING_LOADERS = frozenset({"torch.load", "torch.serialization.load", "torch.hub.load_state_dict_from_url"})


class TorchLoadWeightsOnlyFalse(Rule):
    code = "TL801"
    name = "torch-load-weights-only-false"
    severity = Severity.WARNING
    summary = "torch.load(..., weights_only=False) unpickles arbitrary objects: code execution from a checkpoint."
    message = "weights_only=False lets the checkpoint run arbitrary code while it is unpickled"
    hint = (
        "Load with weights_only=True (the default since torch 2.6) and save state_dicts; allow-list extra "
        "classes with torch.serialization.add_safe_globals, or store weights as safetensors."
    )
    triggers = ("weights_only",)

    def check(self, ctx: Context) -> Iterator[Report]:
        model, ev = ctx.model, ctx.evaluator
        if model.is_test:
            return  # tests exercise forward() and load their own fixtures on purpose
        for call in model.calls_by_name.get("load", []) + model.calls_by_name.get("load_state_dict_from_url", []):
            flag = call_arg(call, None, "weights_only")
            if flag is not None and _is_loader(call, model, ev) and _certainly_false(flag, model, ev):
                yield Report(
                    call,
                    message=(
                        f"{dotted(call.func) or 'torch.load'}(..., weights_only=False) unpickles arbitrary Python "
                        "objects: a tampered or downloaded checkpoint executes code when it is loaded"
                    ),
                )


def _is_loader(call: cst.Call, model: ModuleModel, ev: Evaluator) -> bool:
    callee = ev.callee(call, model)
    # A notebook or fragment may use ``torch`` without an import the evaluator can see.
    return bool(callee & UNPICKLING_LOADERS) or (not callee and dotted(call.func) == "torch.load")


def _certainly_false(flag: cst.BaseExpression, model: ModuleModel, ev: Evaluator) -> bool:
    """``False``, or a name whose every reaching assignment is ``False`` (``UNSAFE = False``)."""
    if literal_value(flag) is False:
        return True
    if not isinstance(flag, cst.Name):
        return False
    bindings = ev.reaching(flag, model)
    return bool(bindings) and all(
        b.kind == "assign" and not b.path and b.value is not None and literal_value(b.value) is False for b in bindings
    )
