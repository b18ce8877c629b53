from __future__ import annotations

import re
from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted, root_name, terminal_name
from trainlint.analysis.values import ClassRef, Evaluator, FuncRef, Instance, LibRef, Obj, Value
from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule

# Library bases that make a user class an ``nn.Module``.
MODULE_BASE_PREFIXES = ("torch.nn.", "transformers.", "pytorch_lightning.", "lightning.", "timm.")
# Library calls that build a module: ``nn.Linear(...)``, ``resnet50()``, ``X.from_pretrained``.
MODULE_FACTORY_PREFIXES = ("torchvision.models.", "timm.", "torch.hub.load", "torch.distributed.fsdp.")
# Names people give to models; used only when nothing is known about the value.
MODEL_NAME = re.compile(
    r"^_?(\w*_)?(model|net|network|encoder|decoder|backbone|generator|discriminator|classifier|teacher|student)\d*$"
    r"|^\w*(model|net)\d*$",
    re.IGNORECASE,
)


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
        for call in model.calls_by_name.get("forward", []):
            func = call.func
            if not isinstance(func, cst.Attribute) or _own_method_call(func.value, call, model, ev):
                continue
            if _is_module(func.value, model, ev):
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
    return cls is not None and _is_module_class(ClassRef(model, cls), ev)


def _is_module(receiver: cst.BaseExpression, model: ModuleModel, ev: Evaluator) -> bool:
    """Known to be an ``nn.Module``, or unknown and named like a model."""
    values = [v for v in ev.eval(receiver, model) if _informative(v)]
    if values:
        return any(_module_value(v, ev) for v in values)
    name = terminal_name(receiver)
    return name is not None and MODEL_NAME.match(name) is not None


def _informative(value: Value) -> bool:
    """Values that say what kind of object the receiver is (``None`` placeholders do not)."""
    return isinstance(value, (Instance, Obj, LibRef, FuncRef))


def _module_value(value: Value, ev: Evaluator) -> bool:
    if isinstance(value, Instance):
        return _is_module_class(value.cls, ev)
    if isinstance(value, Obj):
        return _module_factory(value.qualname)
    return False


def _is_module_class(cls: ClassRef, ev: Evaluator) -> bool:
    return any(base.startswith(MODULE_BASE_PREFIXES) for base in ev.base_qualnames(cls))


def _module_factory(qualname: str) -> bool:
    last = qualname.rsplit(".", 1)[-1]
    if qualname.startswith("torch.nn.") and last[:1].isupper():
        return True
    if qualname.startswith("transformers.") and last == "from_pretrained":
        return True
    return qualname.startswith(MODULE_FACTORY_PREFIXES)
