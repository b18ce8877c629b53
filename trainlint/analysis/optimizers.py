"""Optimizer constructions and what they decay: the ``weight_decay`` each parameter group
gets, and whether a plain parameter iterable is the whole model.

Used by the weight-decay rules. Parameter groups are read only from list literals of dict
literals (possibly through a variable); lists built by ``append`` or by helper functions
(timm's ``param_groups_weight_decay``, torchvision's ``set_weight_decay``) are unknown,
and unknown means the rules stay silent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import hydra as H
from trainlint.analysis.brains import lightning as PL
from trainlint.analysis.brains import torch as T
from trainlint.analysis.argparse_defaults import resolve_number
from trainlint.analysis.configs import ConfigNode, configs_of, library_target
from trainlint.analysis.models import EXEMPT, has_layers
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted
from trainlint.analysis.values import ClassRef, DictV, Evaluator, Instance, Obj, SeqV, call_arg, literal_value

MAX_DEPTH = 6

# Library modules whose ``parameters()`` are a whole network rather than one layer.
_CONTAINERS = frozenset(
    {"torch.nn.Sequential", "torch.nn.ModuleList", "torch.nn.ModuleDict"}
) | T.MODEL_WRAPPERS

Decay = Literal["zero", "nonzero", "unknown"]


@dataclass(frozen=True)
class Group:
    """One parameter group: its ``params`` and the ``weight_decay`` it runs with (its own
    key, else the optimizer's argument; ``None`` when neither is given: the default)."""

    params: cst.BaseExpression | None
    decay: cst.BaseExpression | None
    module: ModuleModel


@dataclass(frozen=True)
class OptimizerCall:
    call: cst.Call
    qualname: str
    params: cst.BaseExpression | None
    weight_decay: cst.BaseExpression | None
    # The parameter groups when ``params`` is a list of dicts; ``None`` otherwise.
    groups: tuple[Group, ...] | None
    # The config file that sets ``weight_decay`` (an optimizer built by Hydra).
    origin: Path | None = None

    @property
    def short_name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]


def optimizer_calls(module: ModuleModel, ev: Evaluator) -> Iterator[OptimizerCall]:
    """Constructions of ``torch.optim`` optimizers in ``module``."""
    # Only calls named like a torch optimizer class are evaluated: resolving every call of
    # a file would follow its imports into large code bases.
    for call in (c for name in T.OPTIMIZER_NAMES for c in module.calls_by_name.get(name, [])):
        qualname = next((q for q in sorted(ev.callee(call, module)) if brains.is_optimizer(q)), None)
        if qualname is None:
            continue
        position = T.DECAY_POSITION.get(qualname.rsplit(".", 1)[-1])
        weight_decay = call_arg(call, position, "weight_decay") or _keyword_in_unpacked(call, "weight_decay", module, ev)
        params = call_arg(call, 0, "params")
        groups = _groups(params, weight_decay, module, ev) if params is not None else None
        yield OptimizerCall(call, qualname, params, weight_decay, groups)
    yield from _configured(module, ev)


def decay_of(expr: cst.BaseExpression | None, module: ModuleModel, ev: Evaluator) -> Decay:
    """Whether a ``weight_decay`` expression is certainly 0, certainly not, or unknown."""
    if expr is None or literal_value(expr) is None:
        return "zero"
    number = resolve_number(expr, module, ev)
    if number is None:
        return "unknown"
    return "zero" if number == 0 else "nonzero"


def same_decay(groups: tuple[Group, ...], ev: Evaluator) -> bool:
    """Every group certainly runs with the same decay: equal numbers, or the very same
    expression text when the value is unknown (``args.weight_decay`` twice)."""
    keys = {_decay_key(g, ev) for g in groups}
    return len(keys) == 1 and None not in keys


def whole_model_params(expr: cst.BaseExpression, module: ModuleModel, ev: Evaluator, depth: int = 0) -> str | None:
    """The source text of the model when ``expr`` is every parameter of a whole model:
    ``model.parameters()``, ``self.parameters()``, ``filter(lambda p: p.requires_grad, ...)``,
    ``[p for p in model.parameters() if p.requires_grad]``, or a variable bound to one."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(expr, cst.Name):
        return _bound_whole(expr, module, ev, depth)
    if isinstance(expr, (cst.ListComp, cst.GeneratorExp)):
        source = _trainable_comprehension(expr)
        return whole_model_params(source, module, ev, depth + 1) if source is not None else None
    if not isinstance(expr, cst.Call):
        return None
    func = expr.func
    if isinstance(func, cst.Attribute) and func.attr.value in ("parameters", "named_parameters") and not expr.args:
        if _freezes_parameters(module):
            return None  # frozen parameters get no gradient, so no decay: a linear probe, LoRA
        if has_layers(ev.eval(func.value, module), ev, EXEMPT) is False:
            return None  # every layer is known, none has a bias or a norm weight to spare
        return module.tree.code_for_node(func.value) if _is_whole_model(func.value, module, ev) else None
    if isinstance(func, cst.Name) and func.value in ("list", "tuple") and len(expr.args) == 1:
        return whole_model_params(expr.args[0].value, module, ev, depth + 1)
    if isinstance(func, cst.Name) and func.value == "filter" and len(expr.args) == 2 and _mentions_requires_grad(expr.args[0].value):
        return whole_model_params(expr.args[1].value, module, ev, depth + 1)
    return None


# -- optimizers built by Hydra from a config ----------------------------------------------


def _configured(module: ModuleModel, ev: Evaluator) -> Iterator[OptimizerCall]:
    """Optimizers whose class and settings come from a Hydra config:
    ``instantiate(cfg.optimizer, params=...)``, ``instantiate(cfg.optimizer)(params=...)``
    (a ``_partial_`` node, also through a variable), and ``self.hparams.optimizer(params=...)``
    in a module Hydra builds from a node holding ``optimizer``."""
    configs = configs_of(ev.project)
    for call in module.calls_by_name.get("instantiate", []):
        first = call_arg(call, 0, "config")
        if first is None or not ev.callee(call, module) & H.INSTANTIATE:
            continue
        node = configs.node_of(first, module, ev)
        if node is None:
            continue
        partial = node.get(H.PARTIAL) is True or literal_value(call_arg(call, None, H.PARTIAL) or cst.Name("None")) is True
        if not partial:
            found = _configured_call(call, call_arg(call, 1, "params"), node, module, ev)
            if found is not None:
                yield found
            continue
        for built in _calls_of_result(call, module, ev):
            found = _configured_call(built, call_arg(built, 0, "params"), node, module, ev)
            if found is not None:
                yield found
    for call in module.calls:
        func = call.func
        if isinstance(func, cst.Attribute) and dotted(func.value) == PL.HPARAMS:
            node = _hparam_node(call, func.attr.value, module, ev)
            found = _configured_call(call, call_arg(call, 0, "params"), node, module, ev) if node is not None else None
            if found is not None:
                yield found


def _configured_call(
    call: cst.Call, params: cst.BaseExpression | None, node: ConfigNode, module: ModuleModel, ev: Evaluator
) -> OptimizerCall | None:
    qualname = library_target(node.get(H.TARGET))
    if qualname is None or not brains.is_optimizer(qualname):
        return None
    explicit = call_arg(call, None, "weight_decay")
    decay = explicit if explicit is not None else _literal(node.get("weight_decay"))
    if explicit is None and "weight_decay" in node.values and decay is None:
        return None  # set to something we cannot read (an interpolation we do not follow)
    origin = node.origin("weight_decay") if explicit is None else None
    groups = _groups(params, decay, module, ev) if params is not None else None
    return OptimizerCall(call, qualname, params, decay, groups, origin)


def _literal(value: Any) -> cst.BaseExpression | None:
    """A config number as an expression the decay queries read like source."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return cst.Integer(str(value)) if isinstance(value, int) and value >= 0 else cst.parse_expression(repr(value))


def _calls_of_result(call: cst.Call, module: ModuleModel, ev: Evaluator) -> Iterator[cst.Call]:
    """Calls of what ``call`` returns: ``call(...)``, or ``name(...)`` after ``name = call``."""
    parent = module.parent_of(call)
    if isinstance(parent, cst.Call) and parent.func is call:
        yield parent
        return
    if not (isinstance(parent, cst.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0].target, cst.Name)):
        return
    name = parent.targets[0].target.value
    for use in module.calls_by_name.get(name, []):
        if isinstance(use.func, cst.Name) and any(b.node is parent for b in ev.reaching(use.func, module)):
            yield use


def _hparam_node(call: cst.Call, name: str, module: ModuleModel, ev: Evaluator) -> ConfigNode | None:
    """``self.hparams.<name>``: the ``<name>`` child of the config nodes Hydra builds this
    class from, when every such node agrees (one node, or the same values)."""
    cls = module.method_class(module.enclosing_function(call))
    init = next((f for f in module.functions if f.name.value == "__init__" and module.method_class(f) is cls), None)
    if cls is None or init is None or not _saves_hyperparameters(init, module):
        return None
    if name not in {p.name.value for p in (*init.params.params, *init.params.kwonly_params)}:
        return None
    children = [child for node in configs_of(ev.project).built_from(ClassRef(module, cls), ev) if (child := node.child(name)) is not None]
    distinct = {repr(sorted(child.values.items(), key=str)) for child in children}
    return children[0] if len(distinct) == 1 else None


def _saves_hyperparameters(init: cst.FunctionDef, module: ModuleModel) -> bool:
    return any(
        isinstance(c.func, cst.Attribute) and c.func.attr.value == PL.SAVE_HYPERPARAMETERS
        for c in module.calls_by_function.get(init, [])
    )


# -- parameter groups --------------------------------------------------------------------


def _groups(
    params: cst.BaseExpression, inherited: cst.BaseExpression | None, module: ModuleModel, ev: Evaluator
) -> tuple[Group, ...] | None:
    lists = [v for v in ev.eval(params, module) if isinstance(v, SeqV)]
    if len(lists) != 1 or _grown_later(params, module) or _grown_later(_bound_name(lists[0]), lists[0].module):
        return None
    dicts = [ev.eval(element.value, lists[0].module) for element in lists[0].node.elements]
    if not dicts or not all(len(d) == 1 and isinstance(d[0], DictV) for d in dicts):
        return None
    return tuple(_group(d[0], inherited, module) for d in dicts)  # type: ignore[arg-type]


def _group(value: DictV, inherited: cst.BaseExpression | None, module: ModuleModel) -> Group:
    entries = {
        literal_value(e.key): e.value for e in value.node.elements if isinstance(e, cst.DictElement)
    }
    # A group without its own key runs with the optimizer's argument, evaluated where the
    # optimizer is built.
    own = entries.get("weight_decay")
    return Group(entries.get("params"), own if own is not None else inherited, value.module if own is not None else module)


def _bound_name(value: SeqV) -> cst.BaseExpression | None:
    """``groups`` in ``groups = [...]``, where the list may be built in a helper."""
    parent = value.module.parent_of(value.node)
    if isinstance(parent, cst.Assign) and len(parent.targets) == 1:
        return parent.targets[0].target
    return None


def _grown_later(params: cst.BaseExpression | None, module: ModuleModel) -> bool:
    """``groups = [...]; groups.append({...})``: the literal is not the whole list."""
    if not isinstance(params, cst.Name):
        return False
    name = params.value
    grown = any(
        isinstance(call.func, cst.Attribute) and isinstance(call.func.value, cst.Name) and call.func.value.value == name
        for method in ("append", "extend", "insert")
        for call in module.calls_by_name.get(method, [])
    )
    return grown or any(isinstance(a.target, cst.Name) and a.target.value == name for a in module.aug_assigns)


def _keyword_in_unpacked(call: cst.Call, keyword: str, module: ModuleModel, ev: Evaluator) -> cst.BaseExpression | None:
    """``weight_decay`` passed through ``**opt_args`` with ``opt_args = dict(weight_decay=...)``
    or a dict literal."""
    for arg in call.args:
        if arg.star != "**" or not isinstance(arg.value, cst.Name):
            continue
        for binding in ev.reaching(arg.value, module):
            value = binding.value
            if isinstance(value, cst.Call) and isinstance(value.func, cst.Name) and value.func.value == "dict":
                found = call_arg(value, None, keyword)
                if found is not None:
                    return found
            if isinstance(value, cst.Dict):
                for element in value.elements:
                    if isinstance(element, cst.DictElement) and literal_value(element.key) == keyword:
                        return element.value
    return None


def _decay_key(group: Group, ev: Evaluator) -> object:
    if group.decay is None:
        return None
    number = resolve_number(group.decay, group.module, ev)
    if number is not None:
        return number
    return group.module.tree.code_for_node(group.decay)


# -- whole-model parameters ----------------------------------------------------------------


def _bound_whole(name: cst.Name, module: ModuleModel, ev: Evaluator, depth: int) -> str | None:
    """A variable bound to every parameter of a model on every path: one branch that splits
    the groups (torchvision's ``--norm-weight-decay``) makes the choice deliberate."""
    bindings = ev.reaching(name, module)
    texts = {
        whole_model_params(b.value, module, ev, depth + 1) if b.kind == "assign" and not b.path and b.value is not None else None
        for b in bindings
    }
    return texts.pop() if len(texts) == 1 else None


# -- whole-model parameters ----------------------------------------------------------------


def _freezes_parameters(module: ModuleModel) -> bool:
    """The file freezes parameters: ``p.requires_grad = False`` or ``requires_grad_(False)``."""
    return module.cached("freezes_parameters", lambda: _scan_freezes(module))


def _scan_freezes(module: ModuleModel) -> bool:
    for call in module.calls_by_name.get("requires_grad_", []):
        flag = call_arg(call, 0, "requires_grad")
        if flag is not None and literal_value(flag) is False:
            return True
    return any(
        isinstance(target.target, cst.Attribute)
        and target.target.attr.value == "requires_grad"
        and literal_value(assign.value) is False
        for assign in module.assigns
        for target in assign.targets
    )


def _trainable_comprehension(expr: cst.ListComp | cst.GeneratorExp) -> cst.BaseExpression | None:
    """The iterable of ``p for p in X if p.requires_grad`` (or ``p for n, p in
    X.named_parameters()``) when the only filter is on ``requires_grad``."""
    clause = expr.for_in
    if clause.inner_for_in is not None or not all(_mentions_requires_grad(c.test) for c in clause.ifs):
        return None
    target, elt = clause.target, expr.elt
    if not isinstance(elt, cst.Name):
        return None
    if isinstance(target, cst.Name) and target.value == elt.value:
        return clause.iter
    if isinstance(target, cst.Tuple) and len(target.elements) == 2:
        second = target.elements[1].value
        if isinstance(second, cst.Name) and second.value == elt.value:
            return clause.iter
    return None


def _mentions_requires_grad(node: cst.CSTNode) -> bool:
    found = False

    class _Finder(cst.CSTVisitor):
        def visit_Attribute(self, attribute: cst.Attribute) -> None:
            nonlocal found
            found = found or attribute.attr.value == "requires_grad"

    node.visit(_Finder())
    return found


def _is_whole_model(receiver: cst.BaseExpression, module: ModuleModel, ev: Evaluator) -> bool:
    """``model`` / ``self`` / ``model.module`` / ``self.model`` of a trainer: a whole
    network, not one layer (``nn.Linear``) nor a sub-module (``model.fc``)."""
    values = ev.eval(receiver, module)
    if any(isinstance(v, Obj) and v.qualname.startswith("torch.nn.") and v.qualname not in _CONTAINERS for v in values):
        return False
    if isinstance(receiver, cst.Name):
        return _whole_name(receiver, module, ev)
    if not isinstance(receiver, cst.Attribute):
        return False
    if receiver.attr.value == "module":  # ``ddp_model.module``
        return _is_whole_model(receiver.value, module, ev)
    if dotted(receiver) in PL.SELF_MODEL_ATTRIBUTES:
        return True
    # ``self.model`` of a trainer holds the network; ``self.fc`` of an nn.Module is a layer.
    owners = ev.instances(receiver.value, module)
    return bool(owners) and not any(_is_torch_module(owner, ev) for owner in owners)


def _whole_name(name: cst.Name, module: ModuleModel, ev: Evaluator) -> bool:
    """A variable holds a whole model unless it was bound from an attribute that is not
    (``encoder = model.encoder``)."""
    for binding in ev.reaching(name, module):
        if binding.kind == "assign" and not binding.path and isinstance(binding.value, cst.Attribute):
            if not _is_whole_model(binding.value, module, ev):
                return False
    return True


def _is_torch_module(instance: Instance, ev: Evaluator) -> bool:
    return any(q.startswith("torch.nn.") for q in ev.base_qualnames(instance.cls))
