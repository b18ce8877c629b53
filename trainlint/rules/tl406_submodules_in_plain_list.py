from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.submodules import Unregistered, unregistered, uses
from trainlint.analysis.training import call_text
from trainlint.diagnostics import Severity
from trainlint.fixing import Edit, Fix, FixSafety
from trainlint.rule import Context, Report, Rule

LIST_METHODS = frozenset({"append", "extend", "insert"})
DICT_METHODS = frozenset({"items", "keys", "values"})
SEQUENCE_FUNCTIONS = frozenset({"len", "enumerate", "zip", "reversed", "iter", "list"})


class SubmodulesInPlainList(Rule):
    code = "TL406"
    name = "submodules-in-plain-list"
    severity = Severity.ERROR
    summary = "nn.Module instances kept in a plain list/dict attribute are not registered as submodules."
    message = "modules in a plain list/dict are not registered: parameters(), .to(), state_dict() and the optimizer never see them"
    hint = "Hold them in nn.ModuleList([...]) (or nn.ModuleDict({...}) for a dict)."
    triggers = ("Module",)
    # ``self.layers = [...]`` -> ``self.layers = nn.ModuleList([...])`` (``{...}`` with string
    # keys -> ``nn.ModuleDict({...})``). Unsafe: the modules become registered, which is the
    # fix, but ``state_dict()`` gains their keys (a checkpoint saved before no longer loads
    # with ``strict=True``) and an optimizer built from ``model.parameters()`` now trains
    # them. Offered only when every use of the attribute in the class works the same on the
    # container (iteration, indexing, ``len``, ``append``/``extend``/``insert``; ``items()``
    # and friends for a dict) and ``torch.nn`` is imported.
    fix_safety = FixSafety.UNSAFE

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

    def fix(self, node: cst.CSTNode, ctx: Context) -> Fix | None:
        model = ctx.model
        found = next((f for f in unregistered(model, ctx.evaluator) if f.assignment.value is node), None)
        nn = _nn(model)
        if found is None or nn is None or not isinstance(node, cst.BaseExpression):
            return None
        container = _container(found, node)
        if container is None or not all(_compatible(use, container, model) for use in uses(found, model)):
            return None
        empty = isinstance(node, (cst.List, cst.Dict)) and not node.elements or isinstance(node, cst.Call)
        args = [] if empty else [cst.Arg(node)]
        return Fix([Edit(node, cst.Call(cst.Attribute(nn, cst.Name(container)), args))])


def _dict_call(source: cst.BaseExpression) -> bool:
    return isinstance(source, cst.Call) and isinstance(source.func, cst.Name) and source.func.value == "dict"


def _container(found: Unregistered, value: cst.BaseExpression) -> str | None:
    """``ModuleList`` for a list (literal, comprehension, ``[]``/``list()``, or a local list),
    ``ModuleDict`` for a dict literal with plain string keys; else no fix."""
    if isinstance(value, cst.Dict) or _dict_call(value):
        keys = [e.key for e in value.elements if isinstance(e, cst.DictElement)] if isinstance(value, cst.Dict) else []
        plain = all(isinstance(k, cst.SimpleString) and "." not in k.evaluated_value for k in keys)
        return "ModuleDict" if plain and len(keys) == len(getattr(value, "elements", [])) else None
    if isinstance(value, (cst.List, cst.ListComp)) or isinstance(value, cst.Call) and not value.args:
        return "ModuleList"
    if isinstance(value, cst.Name) and isinstance(found.source, (cst.List, cst.ListComp)):
        return "ModuleList"
    return None


def _compatible(use: cst.Attribute, container: str, model: ModuleModel) -> bool:
    parent = model.parent_of(use)
    if isinstance(parent, cst.Subscript) and parent.value is use:
        return True
    if isinstance(parent, cst.For) and parent.iter is use:
        return container == "ModuleList"
    if isinstance(parent, cst.Arg):
        call = model.parent_of(parent)
        return isinstance(call, cst.Call) and isinstance(call.func, cst.Name) and call.func.value in SEQUENCE_FUNCTIONS and container == "ModuleList"
    if isinstance(parent, cst.Attribute) and parent.value is use:
        call = model.parent_of(parent)
        methods = LIST_METHODS if container == "ModuleList" else DICT_METHODS
        return isinstance(call, cst.Call) and call.func is parent and parent.attr.value in methods
    return False


def _nn(model: ModuleModel) -> cst.BaseExpression | None:
    """How this file names ``torch.nn``: ``nn`` (or its alias), else ``torch.nn``."""
    for name, bindings in model.module_scope.bindings.items():
        if any(b.kind == "import" and b.qualname == "torch.nn" for b in bindings):
            return cst.Name(name)
    for name, bindings in model.module_scope.bindings.items():
        if any(b.kind == "import" and b.qualname == "torch" for b in bindings):
            return cst.Attribute(cst.Name(name), cst.Name("nn"))
    return None
