"""Submodules a module holds without registering them.

``nn.Module.__setattr__`` registers a module assigned to an attribute, and the containers
``nn.ModuleList`` / ``nn.ModuleDict`` / ``nn.Sequential`` register what they hold. A plain
``list`` / ``dict`` / ``tuple`` attribute registers nothing: its modules are invisible to
``parameters()``, ``.to()``, ``state_dict()`` and ``train()``/``eval()``.

Only modules *built* in the class's own code are considered (``nn.Linear(...)``,
``Block(...)``, directly, in a comprehension, or appended in a loop): a list of modules
handed in from outside is the known way to keep a frozen teacher or a shared encoder out of
the parameters. A list that is also given to a container (``nn.Sequential(*layers)``), a
class that registers modules by name (``add_module``, ``setattr``), single-element lists
(the same idiom) and lists of parameter-free layers (``nn.ReLU()``) are left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import torch as T
from trainlint.analysis.models import DYNAMIC_REGISTRATION, is_model_value
from trainlint.analysis.module import AttrAssignment, ModuleModel
from trainlint.analysis.names import dotted, terminal_name
from trainlint.analysis.values import ClassRef, Evaluator, LibRef, Obj, Value
from trainlint.analysis.walk import iter_children

GROWERS = frozenset({"append", "extend", "insert"})
PLAIN = (cst.List, cst.ListComp, cst.Tuple, cst.Dict, cst.DictComp)
BUILTINS = frozenset(
    {"len", "enumerate", "zip", "range", "print", "isinstance", "reversed", "iter", "list", "tuple", "sorted", "sum",
     "any", "all", "min", "max", "map", "filter", "next", "str", "repr", "getattr", "hasattr"}
)


@dataclass(frozen=True)
class Unregistered:
    """``self.<attr> = value`` in ``cls`` holds modules built at ``built`` (a constructor
    call) in a plain container; ``source`` is the literal or comprehension (``value``
    itself, or the local list it names)."""

    cls: cst.ClassDef
    attr: str
    assignment: AttrAssignment
    source: cst.BaseExpression
    built: cst.Call


def unregistered(module: ModuleModel, ev: Evaluator) -> Iterator[Unregistered]:
    for cls in module.classes.values():
        if not _is_torch_module(cls, module, ev) or _registers_by_name(cls, module):
            continue
        for attr, assignments in module.self_attrs.get(cls, {}).items():
            found = _plain_holder(cls, attr, assignments, module, ev)
            if found is not None:
                yield found


def _is_torch_module(cls: cst.ClassDef, module: ModuleModel, ev: Evaluator) -> bool:
    return any(brains.is_module_base(base) for base in ev.base_qualnames(ClassRef(module, cls)))


def _registers_by_name(cls: cst.ClassDef, module: ModuleModel) -> bool:
    return any(terminal_name(call.func) in DYNAMIC_REGISTRATION for call in module.within(module.calls, cls))


def _plain_holder(
    cls: cst.ClassDef, attr: str, assignments: list[AttrAssignment], module: ModuleModel, ev: Evaluator
) -> Unregistered | None:
    if len(assignments) != 1 or assignments[0].path:
        return None  # reassigned (``self.layers = nn.ModuleList(self.layers)``) or unpacked
    assignment = assignments[0]
    source, names = _source(assignment, attr, module, ev)
    if source is None:
        return None
    grown = [call for name in names for call in _grown(name, assignment.method if name != f"self.{attr}" else cls, module)]
    built = [*_built_elements(source, module, ev), *(b for call in grown for b in _built_arguments(call, module, ev))]
    if not built or _count(source) == 1 and not grown or _handed_to_container(names, cls, module, ev):
        return None
    if all(_parameter_free(call, module, ev) for call in built):
        return None
    return Unregistered(cls, attr, assignment, source, built[0])


def _source(assignment: AttrAssignment, attr: str, module: ModuleModel, ev: Evaluator) -> tuple[cst.BaseExpression | None, list[str]]:
    """The list/dict literal or comprehension the attribute is bound to (directly, or through
    a local name bound once in the same method), and the names it is known by."""
    value = assignment.value
    names = [f"self.{attr}"]
    if isinstance(value, cst.Name):
        bindings = [b for b in ev.reaching(value, module) if b.kind == "assign" and not b.path]
        if len(bindings) != 1 or bindings[0].value is None or len(ev.reaching(value, module)) != 1:
            return None, names
        names.append(value.value)
        value = bindings[0].value
    if isinstance(value, cst.Call) and isinstance(value.func, cst.Name) and value.func.value in ("list", "dict") and not value.args:
        return value, names
    return (value, names) if isinstance(value, PLAIN) else (None, names)


def _count(source: cst.BaseExpression) -> int | None:
    if isinstance(source, (cst.List, cst.Tuple, cst.Dict)):
        return len(source.elements)
    return None


def _grown(name: str, scope: cst.CSTNode, module: ModuleModel) -> Iterator[cst.Call]:
    """``name.append(x)`` / ``extend`` / ``insert`` calls inside ``scope``."""
    for method in GROWERS:
        for call in module.within(module.calls_by_name.get(method, []), scope):
            func = call.func
            if isinstance(func, cst.Attribute) and dotted(func.value) == name:
                yield call


def _built_elements(source: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> Iterator[cst.Call]:
    if isinstance(source, (cst.List, cst.Tuple)):
        for element in source.elements:
            yield from _constructed(element.value, module, ev)
    elif isinstance(source, cst.Dict):
        for entry in source.elements:
            if isinstance(entry, cst.DictElement):
                yield from _constructed(entry.value, module, ev)
    elif isinstance(source, cst.ListComp):
        yield from _constructed(source.elt, module, ev)
    elif isinstance(source, cst.DictComp):
        yield from _constructed(source.value, module, ev)


def _built_arguments(call: cst.Call, module: ModuleModel, ev: Evaluator) -> Iterator[cst.Call]:
    for arg in call.args:
        value = arg.value
        if isinstance(value, (cst.List, cst.Tuple, cst.ListComp)):
            yield from _built_elements(value, module, ev)
        elif isinstance(value, cst.GeneratorExp):
            yield from _constructed(value.elt, module, ev)
        else:
            yield from _constructed(value, module, ev)


def _constructed(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> Iterator[cst.Call]:
    """``expr`` builds a module here: a constructor call, or a local name bound to one."""
    if isinstance(expr, cst.Name):
        bindings = ev.reaching(expr, module)
        if len(bindings) == 1 and bindings[0].kind == "assign" and isinstance(bindings[0].value, cst.Call) and not bindings[0].path:
            expr = bindings[0].value
    if isinstance(expr, cst.Call) and _builds_module(ev.eval(expr, module), ev):
        yield expr


def _builds_module(values: tuple[Value, ...], ev: Evaluator) -> bool:
    return bool(values) and all(
        is_model_value(v, ev) and not (isinstance(v, Obj) and v.qualname in T.PARAMETER_CLASSES) for v in values
    )


def _parameter_free(call: cst.Call, module: ModuleModel, ev: Evaluator) -> bool:
    layers = [T.layer_name(v.qualname) for v in ev.eval(call, module) if isinstance(v, Obj)]
    return bool(layers) and all(layer in T.PARAMETER_FREE_LAYERS for layer in layers)


def _handed_to_container(names: list[str], cls: cst.ClassDef, module: ModuleModel, ev: Evaluator) -> bool:
    """The list is given to a call (``nn.Sequential(*layers)``, ``nn.ModuleList(layers)``,
    a helper that may register it): its modules may be registered there."""
    for call in module.within(module.calls, cls):
        if terminal_name(call.func) in GROWERS or _builtin(call.func):
            continue
        if any(dotted(arg.value) in names for arg in call.args) and _may_register(call, module, ev):
            return True
    return False


def _may_register(call: cst.Call, module: ModuleModel, ev: Evaluator) -> bool:
    """A container (``nn.Sequential``), project code or an unknown callable may register
    what it is given; a known library function (``copy.deepcopy``) does not."""
    callees = ev.eval(call.func, module)
    return not callees or any(not isinstance(v, LibRef) or v.qualname in T.CONTAINERS for v in callees)


def _builtin(func: cst.BaseExpression) -> bool:
    """``len(self.layers)``, ``zip(self.a, self.b)``: builtins register nothing."""
    return isinstance(func, cst.Name) and func.value in BUILTINS


def uses(found: Unregistered, module: ModuleModel) -> Iterator[cst.Attribute]:
    """Every ``self.<attr>`` in the class other than the assignment's target."""
    pending: list[cst.CSTNode] = [found.cls]
    while pending:
        node = pending.pop()
        if isinstance(node, cst.Attribute) and node.attr.value == found.attr and dotted(node.value) == "self":
            parent = module.parent_of(node)
            if not (isinstance(parent, cst.AssignTarget) and parent.target is node):
                yield node
        pending.extend(iter_children(node))
