"""IR ops about what outlives one iteration: values kept in containers and meters,
recurrent state fed from one batch into the next, one-shot iterators consumed more than
once, and modules whose parameters are frozen or overwritten.

ir.py builds the training ops (clear, backward, step...); it hands every assignment, call,
comprehension and ``for`` header to :class:`ValueOps`, which adds the ops below. Only
names a body actually uses that way are tracked (:func:`tracked_names`): a state holding
every variable of a long script would cost more than it tells.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.analysis.brains import Kind
from trainlint.analysis.brains import timm as TIMM
from trainlint.analysis.brains import torch as T
from trainlint.analysis.ir import Flag, Item, Op, OpKind, object_kind
from trainlint.analysis.models import is_model
from trainlint.analysis.names import dotted, root_name, target_names, terminal_name
from trainlint.analysis.tensors import detaching_call
from trainlint.analysis.values import Instance, Obj, call_arg, literal_value
from trainlint.analysis.walk import iter_children

if TYPE_CHECKING:
    from trainlint.analysis.ir import _Build

# Methods that keep their argument in the receiver.
STORING = frozenset({"append", "extend", "insert", "update", "add", "appendleft", "put"})
_EMPTYING = frozenset({"clear", "reset"})
# Calls that build a container (by terminal name): what ``append``/``[k] =`` may go into.
_CONTAINER_BUILDERS = frozenset({"list", "dict", "defaultdict", "OrderedDict", "deque", "Counter"})
# Module methods returning generators.
_GENERATOR_METHODS = frozenset(
    {"parameters", "named_parameters", "buffers", "named_buffers", "children", "named_children", "modules", "named_modules"}
)
_LAZY_BUILTINS = frozenset({"filter", "map", "zip"})
_DEFINITIONS = frozenset({cst.FunctionDef, cst.ClassDef, cst.Lambda})
_CHAINS = frozenset({"chain", "itertools.chain", "chain.from_iterable", "itertools.chain.from_iterable"})
# Builtins that iterate their argument to the end.
_CONSUMING_BUILTINS = frozenset({"list", "tuple", "set", "frozenset", "sorted", "sum", "any", "all", "max", "min", "dict"})
_CONSUMING_METHODS = frozenset({"clip_grad_norm_", "clip_grad_value_", "clip_grad_norm", "add_param_group", "parameters_to_vector"})
# In-place tensor methods: a loop over parameters calling one of these writes the weights.
_IN_PLACE = frozenset({"mul_", "add_", "sub_", "div_", "copy_", "lerp_", "addcmul_", "set_", "zero_", "fill_"})
_RESETTING = frozenset({"load_state_dict", "reset_parameters", "apply"})
# The meter of pytorch/examples' ImageNet script, copied into most projects (``update`` adds
# ``val * n`` into ``self.sum``): trusted by name when its class cannot be read.
_METER_NAMES = frozenset({"AverageMeter"})


@dataclass(frozen=True)
class Tracked:
    """Names a body uses in the ways the value ops describe."""

    containers: frozenset[str] = frozenset()  # values are stored into them
    recurrent: frozenset[str] = frozenset()  # fed into the call that reassigns them
    iterators: frozenset[str] = frozenset()  # bound to a one-shot iterator


def tracked_names(body: cst.CSTNode) -> Tracked:
    containers: set[str] = set()
    recurrent: set[str] = set()
    iterators: set[str] = set()
    rebound: set[str] = set()  # loop variables are rebound by their loop, not carried
    assigned: set[str] = set()
    consumed: set[str] = set()  # names handed to what may consume an iterator
    pending: list[cst.CSTNode] = [body]
    while pending:
        node = pending.pop()
        kind = type(node)  # exact types: ``isinstance`` against libcst's ABCs is slow
        if kind in _DEFINITIONS and node is not body:
            continue
        if kind is cst.Call:
            func = node.func  # type: ignore[attr-defined]
            if type(func) is cst.Attribute and func.attr.value in STORING:
                name = _container_root(func.value)
                if name is not None:
                    containers.add(name)
        elif kind is cst.Assign:
            assert isinstance(node, cst.Assign)
            targets = [t.target for t in node.targets]
            containers.update(name for t in targets if isinstance(t, cst.Subscript) for name in [_container_root(t.value)] if name)
            names = {n.value for t in targets for n in target_names(t)}
            assigned.update(names)
            if isinstance(node.value, cst.Call):
                recurrent.update(names & _argument_names(node.value))
            if len(targets) == 1 and isinstance(targets[0], cst.Name) and one_shot(node.value):
                iterators.add(targets[0].value)
        elif kind is cst.For or kind is cst.CompFor:
            rebound.update(n.value for n in target_names(node.target))  # type: ignore[attr-defined]
            consumed.update(n.value for n in target_names(node.iter))  # type: ignore[attr-defined]
        if kind is cst.Call and _may_consume(node):  # type: ignore[arg-type]
            consumed.update(n.value for arg in node.args for n in target_names(arg.value))  # type: ignore[attr-defined]
        pending.extend(iter_children(node))
    # A parameter or a global handed to a consumer may be an iterator its caller (or the
    # module's code) bound: the consumption is recorded where that name lives.
    borrowed = consumed - assigned - rebound if not isinstance(body, cst.Module) else set()
    return Tracked(frozenset(containers), frozenset(recurrent - rebound), frozenset(iterators | borrowed))


def _may_consume(call: cst.Call) -> bool:
    """By its name, a call that may walk an iterator to its end (see ``ValueOps._consumer``)."""
    name = terminal_name(call.func)
    return name is not None and (name in _CONSUMING_BUILTINS or name in _CONSUMING_METHODS or name[:1].isupper())


def one_shot(expr: cst.BaseExpression) -> bool:
    """An iterator that can be walked once: ``model.parameters()``, ``filter(...)``,
    ``map(...)``, ``zip(...)``, ``itertools.chain(...)``, a generator expression."""
    if isinstance(expr, cst.GeneratorExp):
        return True
    if not isinstance(expr, cst.Call):
        return False
    func = expr.func
    if isinstance(func, cst.Attribute) and func.attr.value in _GENERATOR_METHODS:
        return True
    return (isinstance(func, cst.Name) and func.value in _LAZY_BUILTINS) or dotted(func) in _CHAINS


class ValueOps:
    """The value ops of one body (see the module docstring)."""

    def __init__(self, build: _Build, tracked: Tracked) -> None:
        self.build = build
        self.ev = build.ev
        self.module = build.module
        self.tracked = tracked

    def _op(self, kind: OpKind, node: cst.CSTNode, **fields: object) -> Op:
        return Op(kind, node, self.module, **fields)  # type: ignore[arg-type]

    # -- hooks ----------------------------------------------------------------------------

    def assignment(self, assign: cst.Assign) -> list[Item]:
        items: list[Item] = []
        value = assign.value
        for target in (t.target for t in assign.targets):
            if isinstance(target, cst.Subscript) and not _fixed_key(target):
                items.extend(self._stores(assign, target.value, [value]))
            for name in target_names(target):
                if name.value in self.tracked.recurrent:
                    flags = frozenset({Flag.RECURRENT}) if self._recurrent(value, name.value) else frozenset()
                    items.append(self._op(OpKind.CARRY, assign, target=name, operand=value, flags=flags, name=name.value))
            if isinstance(target, cst.Name) and target.value in self.tracked.iterators:
                fresh = value if one_shot(value) and self._iterates_model(value) else None
                items.append(self._op(OpKind.ITERATOR, assign, target=target, operand=fresh, name=target.value))
        return items

    def call(self, call: cst.Call) -> list[Item]:
        items: list[Item] = list(self._consumed(call))
        func = call.func
        if not isinstance(func, cst.Attribute):
            return items
        method, receiver = func.attr.value, func.value
        if method in STORING:
            items.extend(self._stores(call, receiver, self._stored_values(call, method, receiver)))
        elif method in _EMPTYING and isinstance(receiver, cst.Name) and self._holder(receiver) is not None:
            items.append(self._op(OpKind.STORE, call, target=receiver, flags=frozenset({Flag.CLEARS}), name=receiver.value))
        elif method == "detach_":
            name = receiver.value if isinstance(receiver, cst.Subscript) else receiver
            if isinstance(name, cst.Name) and name.value in self.tracked.recurrent:
                items.append(self._op(OpKind.CARRY, call, target=name, name=name.value))
        elif method == "requires_grad_":
            flag = call_arg(call, 0, "requires_grad")
            value = literal_value(flag) if flag is not None else True
            if isinstance(value, bool):
                items.append(self._op(OpKind.FREEZE, call, target=receiver, mode="trainable" if value else "frozen"))
        items.extend(self._weights(call, method, receiver))
        return items

    def loop_header(self, loop: cst.For | cst.While) -> list[Item]:
        if not isinstance(loop, cst.For):
            return []
        items: list[Item] = [self._consume(loop, name) for name in self._iterated_names(loop.iter)]
        owners = _parameter_sources(loop)
        if owners:
            requires_grad = _sets_requires_grad(loop)
            if requires_grad is not None and len(owners) == 1:
                mode = "trainable" if requires_grad else "frozen"
                items.append(self._op(OpKind.FREEZE, loop, target=next(iter(owners.values())), mode=mode))
            for variable, owner in owners.items():
                if _writes(loop.body, variable):
                    items.append(self._op(OpKind.LOAD_WEIGHTS, loop, target=owner, mode="update"))
        return items

    def comprehension(self, comp: cst.CompFor) -> list[Item]:
        return [self._consume(comp, name) for name in self._iterated_names(comp.iter)]

    # -- containers -----------------------------------------------------------------------

    def _stores(self, node: cst.CSTNode, receiver: cst.BaseExpression, values: list[cst.BaseExpression]) -> list[Item]:
        root = receiver.value if isinstance(receiver, cst.Subscript) else receiver
        if not isinstance(root, cst.Name) or root.value not in self.tracked.containers or self._holder(root) is None:
            return []
        return [self._op(OpKind.STORE, node, target=root, operand=value, name=root.value) for value in values]

    def _stored_values(self, call: cst.Call, method: str, receiver: cst.BaseExpression) -> list[cst.BaseExpression]:
        """What ``receiver.method(...)`` keeps: the appended item, the entries of a dict
        update, a meter's value."""
        if method == "insert":
            found = call_arg(call, 1, "object")
            return [found] if found is not None else []
        if method == "update":
            if isinstance(receiver, cst.Name) and self._holder(receiver) == "meter":
                found = call_arg(call, 0, "val") or call_arg(call, 0, "value")
                return [found] if found is not None else []
            return [arg.value for arg in call.args if not arg.star or arg.star == "**"]
        return [arg.value for arg in call.args[:1] if not arg.star]

    def _holder(self, name: cst.Name) -> str | None:
        """``"container"`` when ``name`` holds a list/dict/deque, ``"meter"`` when it holds
        an object whose ``update`` keeps its value (an AverageMeter), else ``None``."""
        kinds: set[str | None] = set()
        for binding in self.ev.reaching(name, self.module):
            value = _unpacked(binding.value, binding.path)
            if binding.kind != "assign" or value is None:
                kinds.add(None)
            elif isinstance(value, (cst.List, cst.Dict, cst.ListComp, cst.DictComp)):
                kinds.add("container")
            elif isinstance(value, cst.Call) and terminal_name(value.func) in _CONTAINER_BUILDERS:
                kinds.add("container")
            else:
                kinds.add("meter" if self._meter(value) else None)
        return kinds.pop() if len(kinds) == 1 else None

    def _meter(self, value: cst.BaseExpression) -> bool:
        found = self.ev.eval(value, self.module)
        return bool(found) and all(
            (isinstance(v, Obj) and (v.qualname in TIMM.METERS or v.qualname.rsplit(".", 1)[-1] in _METER_NAMES))
            or (isinstance(v, Instance) and self._keeps_values(v))
            for v in found
        )

    def _keeps_values(self, instance: Instance) -> bool:
        """The class's ``update`` adds its value into an attribute (``self.sum += val * n``)
        and never turns it into a number first."""
        method = self.ev.method(instance.cls, "update")
        if method is None:
            return False
        calls = method.module.calls_by_function.get(method.node, [])
        if any(terminal_name(c.func) in ("item", "detach", "float", "tolist") for c in calls):
            return False
        params = [p.name.value for p in method.node.params.params[1:2]]
        return bool(params) and any(
            isinstance(node, cst.AugAssign) and root_name(node.target) == "self" and params[0] in _names(node.value)
            for node in _walk(method.node.body)
        )

    # -- recurrent state ------------------------------------------------------------------

    def _recurrent(self, value: cst.BaseExpression, name: str) -> bool:
        """``out, h = model(x, h)``: the new state comes out of a model that took the old
        one, with its graph (a model whose forward detaches the state does not count)."""
        if not isinstance(value, cst.Call) or name not in _argument_names(value) or detaching_call(value, self.module, self.ev):
            return False
        func = value.func
        target = func.value if isinstance(func, cst.Attribute) and func.attr.value == "forward" else func
        if not is_model(target, self.module, self.ev):
            return False
        return not any(_mentions_detach(f.node) for f in self.ev.functions_called(value, self.module))

    # -- one-shot iterators ---------------------------------------------------------------

    def _iterates_model(self, value: cst.BaseExpression) -> bool:
        """``x.parameters()`` only counts when ``x`` is a module (a class of one's own may
        return a list)."""
        if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value in _GENERATOR_METHODS:
            return is_model(value.func.value, self.module, self.ev)
        return True

    def _consumed(self, call: cst.Call) -> Iterator[Op]:
        """A call that walks a bound iterator to its end: an optimizer built over it, a
        clip, ``list(...)``, ``sum(...)``."""
        if not self.tracked.iterators or not self._consumer(call):
            return
        for arg in call.args:
            for name in _free_names(arg.value, self._consumer):
                if name.value in self.tracked.iterators:
                    yield self._consume(call, name)

    def _consumer(self, call: cst.Call) -> bool:
        func = call.func
        if isinstance(func, cst.Name) and func.value in _CONSUMING_BUILTINS:
            return True
        name = terminal_name(func)
        if name in _CONSUMING_METHODS:
            return True
        if name is not None and name[:1].isupper() and object_kind(call, self.module, self.ev) is Kind.OPTIMIZER:
            return True
        return bool(self.ev.callee(call, self.module) & T.CLIP_FUNCTIONS)

    def _iterated_names(self, expr: cst.BaseExpression) -> list[cst.Name]:
        """``params`` in ``for p in params`` and ``for i, p in enumerate(params)``."""
        while isinstance(expr, cst.Call) and terminal_name(expr.func) in ("enumerate", "zip", "tqdm", "reversed") and expr.args:
            if terminal_name(expr.func) == "zip":
                return [n for arg in expr.args for n in self._iterated_names(arg.value)]
            expr = expr.args[0].value
        return [expr] if isinstance(expr, cst.Name) and expr.value in self.tracked.iterators else []

    def _consume(self, node: cst.CSTNode, name: cst.Name) -> Op:
        return self._op(OpKind.CONSUME, node, target=name, name=name.value)

    # -- weights --------------------------------------------------------------------------

    def _weights(self, call: cst.Call, method: str, receiver: cst.BaseExpression) -> list[Item]:
        """``model.load_state_dict(...)``, ``model.apply(init)``, ``model.reset_parameters()``
        reset a module's weights; ``ema.update(model)`` (timm) and
        ``swa_model.update_parameters(model)`` move them."""
        kind = object_kind(receiver, self.module, self.ev) if method in _RESETTING or method in ("update", "update_parameters") else None
        if method in _RESETTING and kind in (None, Kind.MODEL) and (method != "apply" or call.args):
            return [self._op(OpKind.LOAD_WEIGHTS, call, target=receiver, mode="reset")]
        if method == "update_parameters" or (method == "update" and any(
            isinstance(v, Obj) and v.qualname in TIMM.EMA_MODELS for v in self.ev.eval(receiver, self.module)
        )):
            return [self._op(OpKind.LOAD_WEIGHTS, call, target=receiver, mode="update")]
        return []


# -- syntax helpers -------------------------------------------------------------------------


def _container_root(expr: cst.BaseExpression) -> str | None:
    """``losses`` in ``losses.append`` and in ``history["loss"].append``."""
    if isinstance(expr, cst.Subscript):
        expr = expr.value
    return expr.value if isinstance(expr, cst.Name) else None


def _fixed_key(target: cst.Subscript) -> bool:
    """``logs["d_loss"] = ...``: every iteration replaces the same entry, so the container
    keeps one value, not one per iteration."""
    index = target.slice[0].slice if len(target.slice) == 1 else None
    return isinstance(index, cst.Index) and literal_value(index.value) is not ...


def _unpacked(value: cst.BaseExpression | None, path: tuple[int, ...]) -> cst.BaseExpression | None:
    """The element a name gets from tuple unpacking: ``[]`` for ``b`` in ``a, b = [], []``."""
    for index in path:
        if not isinstance(value, (cst.Tuple, cst.List)) or not 0 <= index < len(value.elements):
            return None
        element = value.elements[index]
        value = None if isinstance(element, cst.StarredElement) else element.value
    return value


def _argument_names(call: cst.Call) -> set[str]:
    """Names passed to a call, also inside a tuple: ``h`` and ``c`` in ``lstm(x, (h, c))``."""
    names: set[str] = set()
    for arg in call.args:
        names.update(n.value for n in target_names(arg.value))
    return names


def _free_names(expr: cst.BaseExpression, consumer: Callable[[cst.Call], bool]) -> Iterator[cst.Name]:
    """Names an argument passes on, also through lazy wrappers (``filter(f, params)``): not
    attribute receivers, nor names inside lambdas, comprehensions or calls that consume
    on their own."""
    pending: list[cst.CSTNode] = [expr]
    while pending:
        node = pending.pop()
        if isinstance(node, cst.Name):
            yield node
        elif isinstance(node, cst.Call) and not consumer(node):
            pending.extend(arg.value for arg in node.args)
        elif isinstance(node, (cst.List, cst.Tuple, cst.Set)):
            pending.extend(e.value for e in node.elements)
        elif isinstance(node, cst.Dict):
            pending.extend(e.value for e in node.elements)


def _names(node: cst.CSTNode) -> set[str]:
    return {n.value for n in _walk(node) if isinstance(n, cst.Name)}


def _walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    pending = [node]
    while pending:
        current = pending.pop()
        yield current
        pending.extend(iter_children(current))


def _mentions_detach(function: cst.FunctionDef) -> bool:
    return any(isinstance(n, cst.Call) and terminal_name(n.func) in ("detach", "detach_") for n in _walk(function.body))


def _parameter_sources(loop: cst.For) -> dict[str, cst.BaseExpression]:
    """Loop variables bound to a module's parameters, with that module: ``p`` → ``model``
    in ``for p in model.parameters()``, ``ema_p`` → ``ema`` in ``for ema_p, p in
    zip(ema.parameters(), model.parameters())``."""
    sources: list[cst.BaseExpression] = []
    iterable = loop.iter
    if isinstance(iterable, cst.Call) and terminal_name(iterable.func) in ("list", "tuple") and iterable.args:
        iterable = iterable.args[0].value
    if isinstance(iterable, cst.Call) and terminal_name(iterable.func) == "zip":
        sources = [arg.value for arg in iterable.args]
    else:
        sources = [iterable]
    targets = loop.target.elements if isinstance(loop.target, cst.Tuple) and len(sources) > 1 else [cst.Element(loop.target)]
    found: dict[str, cst.BaseExpression] = {}
    for target, source in zip(targets, sources):
        owner = _parameters_of(source)
        variable = target.value
        if owner is not None and isinstance(variable, cst.Tuple) and len(variable.elements) == 2:
            variable = variable.elements[1].value  # ``for name, p in model.named_parameters()``
        if owner is not None and isinstance(variable, cst.Name):
            found[variable.value] = owner
    return found


def _parameters_of(expr: cst.BaseExpression) -> cst.BaseExpression | None:
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in ("parameters", "named_parameters"):
        return expr.func.value
    return None


def _sets_requires_grad(loop: cst.For) -> bool | None:
    """``for p in model.parameters(): p.requires_grad = False`` (every statement of the body
    sets the flag, unconditionally): the value set, else ``None``."""
    body = loop.body
    statements = list(body.body) if isinstance(body, cst.IndentedBlock) else [body]
    values: set[object] = set()
    for statement in statements:
        smalls = statement.body if isinstance(statement, (cst.SimpleStatementLine, cst.SimpleStatementSuite)) else None
        if not smalls:
            return None
        for small in smalls:
            if isinstance(small, cst.Assign) and len(small.targets) == 1 and terminal_name(small.targets[0].target) == "requires_grad":
                values.add(literal_value(small.value))
            elif isinstance(small, cst.Expr) and isinstance(small.value, cst.Call) and terminal_name(small.value.func) == "requires_grad_":
                flag = call_arg(small.value, 0, "requires_grad")
                values.add(literal_value(flag) if flag is not None else True)
            else:
                return None
    return values.pop() if len(values) == 1 and values <= {True, False} else None  # type: ignore[return-value]


def _writes(body: cst.CSTNode, variable: str) -> bool:
    """The loop body changes the parameter in place: ``p.data.mul_(m)``, ``p.copy_(q)``,
    ``p.data = ...``."""
    for node in _walk(body):
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in _IN_PLACE:
            if root_name(node.func.value) == variable:
                return True
        elif isinstance(node, cst.Assign):
            for target in node.targets:
                if isinstance(target.target, cst.Attribute) and target.target.attr.value == "data" and root_name(target.target) == variable:
                    return True
        elif isinstance(node, cst.AugAssign) and root_name(node.target) == variable:
            return True
    return False


__all__ = ["Tracked", "ValueOps", "one_shot", "tracked_names"]
