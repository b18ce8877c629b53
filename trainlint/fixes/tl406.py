"""TL406: ``self.layers = [...]`` → ``self.layers = nn.ModuleList([...])`` (``{...}`` with
string keys → ``nn.ModuleDict({...})``).

Unsafe: the modules become registered, which is the fix, but the model's ``state_dict()``
gains their keys, so a checkpoint saved before the fix no longer loads with
``strict=True``, and an optimizer built from ``model.parameters()`` now trains them. The fix
is offered only when every use of the attribute in the class works the same on the
container (iteration, indexing, ``len``, ``append``/``extend``/``insert``; ``items()`` and
friends for a dict) and ``torch.nn`` is imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.submodules import Unregistered, unregistered, uses
from trainlint.analysis.values import Evaluator
from trainlint.fixes import Edit, Fixer, FixSafety

LIST_METHODS = frozenset({"append", "extend", "insert"})
DICT_METHODS = frozenset({"items", "keys", "values"})
SEQUENCE_FUNCTIONS = frozenset({"len", "enumerate", "zip", "reversed", "iter", "list"})


class PlainListFixer(Fixer):
    code = "TL406"
    safety = FixSafety.UNSAFE

    def edits(self, node: cst.CSTNode, model: ModuleModel, evaluator: Evaluator) -> Sequence[Edit]:
        found = next((f for f in unregistered(model, evaluator) if f.assignment.value is node), None)
        nn = _nn(model)
        if found is None or nn is None or not isinstance(node, cst.BaseExpression):
            return []
        container = _container(found, node)
        if container is None or not all(_compatible(use, container, model) for use in uses(found, model)):
            return []
        empty = isinstance(node, (cst.List, cst.Dict)) and not node.elements or isinstance(node, cst.Call)
        args = [] if empty else [cst.Arg(node)]
        return [Edit(node, cst.Call(cst.Attribute(nn, cst.Name(container)), args))]


def _container(found: Unregistered, value: cst.BaseExpression) -> str | None:
    """``ModuleList`` for a list (literal, comprehension, ``[]``/``list()``, or a local list),
    ``ModuleDict`` for a dict literal with plain string keys; else no fix."""
    if isinstance(value, cst.Dict) or isinstance(value, cst.Call) and isinstance(value.func, cst.Name) and value.func.value == "dict":
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
