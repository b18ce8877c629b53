"""Abstract values: what an expression may evaluate to, followed across statements,
functions, methods and local imports.

The evaluator is deliberately small: it knows library objects by qualified name
(``torch.nn.CrossEntropyLoss``), instances of user classes (whose ``forward`` it can read),
user functions (whose returns it can read), literals and containers, and a few tensor
*kinds* that matter for training bugs (probabilities, log-probabilities, sigmoid outputs,
loss values). Anything else is unknown, and rules stay silent on unknowns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Union

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import torch as T
from trainlint.analysis.module import Binding, ModuleModel, Scope
from trainlint.analysis.names import dotted
from trainlint.analysis.project import Project

MAX_DEPTH = 12
MAX_CALL_SITES = 8


@dataclass(frozen=True)
class LibRef:
    """A library module, class or function, e.g. ``torch.nn.functional.softmax``."""

    qualname: str


@dataclass(frozen=True, eq=False)
class Via:
    """The outermost call of a user function that built and returned an object: a factory
    called twice (``teacher = resnet18()``, ``student = resnet18()``) builds two objects."""

    call: cst.Call
    module: ModuleModel


@dataclass(frozen=True, eq=False)
class Obj:
    """The result of calling a library callable: ``nn.CrossEntropyLoss()``, ``SGD(...)``."""

    qualname: str
    call: cst.Call
    module: ModuleModel
    via: Via | None = None


@dataclass(frozen=True, eq=False)
class ClassRef:
    module: ModuleModel
    node: cst.ClassDef


@dataclass(frozen=True, eq=False)
class Instance:
    """An instance of a user-defined class (typically an ``nn.Module``); ``site`` is the
    constructor call when known (``self`` inside a method has none)."""

    cls: ClassRef
    site: cst.Call | None = None
    where: ModuleModel | None = None  # the module of ``site``
    via: Via | None = None


@dataclass(frozen=True, eq=False)
class FuncRef:
    module: ModuleModel
    node: cst.FunctionDef
    bound: Instance | None = None


@dataclass(frozen=True, eq=False)
class TensorV:
    """A tensor whose meaning we know: ``kind`` is one of :data:`T.TENSOR_KINDS`."""

    kind: str
    origin: cst.CSTNode
    module: ModuleModel


@dataclass(frozen=True)
class Lit:
    value: object


@dataclass(frozen=True, eq=False)
class SeqV:
    """A list/tuple literal; items are evaluated lazily."""

    node: cst.List | cst.Tuple
    module: ModuleModel


@dataclass(frozen=True, eq=False)
class DictV:
    node: cst.Dict
    module: ModuleModel


Value = Union[LibRef, Obj, ClassRef, Instance, FuncRef, TensorV, Lit, SeqV, DictV]


def literal_value(expr: cst.BaseExpression) -> object:
    """The Python value of a numeric/str/bool/None literal (``-1e-4`` included), else ``...``."""
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        inner = literal_value(expr.expression)
        return -inner if isinstance(inner, (int, float)) else ...
    if isinstance(expr, cst.Integer):
        return int(expr.value.replace("_", ""), 0)
    if isinstance(expr, cst.Float):
        return float(expr.value.replace("_", ""))
    if isinstance(expr, cst.SimpleString):
        return expr.evaluated_value
    if isinstance(expr, cst.Name) and expr.value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[expr.value]
    return ...


def unpacked(value: cst.BaseExpression, path: tuple[int, ...]) -> cst.BaseExpression | None:
    """The part of an assigned value that an unpacking target at ``path`` receives: ``b``
    for ``y`` in ``x, y = a, b``; ``None`` when the value is not written as a tuple there."""
    for index in path:
        if not isinstance(value, (cst.Tuple, cst.List)) or index >= len(value.elements):
            return None
        element = value.elements[index]
        if isinstance(element, cst.StarredElement) or any(isinstance(e, cst.StarredElement) for e in value.elements):
            return None
        value = element.value
    return value


def call_arg(call: cst.Call, position: int | None, keyword: str | None) -> cst.BaseExpression | None:
    """The argument passed as ``keyword=`` or at ``position`` (before any ``*args``)."""
    positional = 0
    after_star = False
    for arg in call.args:
        if arg.keyword is not None:
            if keyword is not None and arg.keyword.value == keyword:
                return arg.value
            continue
        if arg.star:
            # Positions after ``*args`` are unknowable.
            after_star = True
            continue
        if position is not None and not after_star and positional == position:
            return arg.value
        positional += 1
    return None


class Evaluator:
    """Evaluates expressions of any loaded module to sets of abstract values."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._memo: dict[int, tuple[Value, ...]] = {}
        self._active: set[int] = set()

    # -- public API ---------------------------------------------------------------------

    def eval(self, expr: cst.BaseExpression, module: ModuleModel) -> tuple[Value, ...]:
        key = id(expr)
        cached = self._memo.get(key)
        if cached is not None:
            return cached
        if key in self._active or len(self._active) > MAX_DEPTH * 4:
            return ()
        self._active.add(key)
        try:
            result = tuple(_dedupe(self._eval(expr, module)))
        finally:
            self._active.discard(key)
        self._memo[key] = result
        return result

    def callee(self, call: cst.Call, module: ModuleModel) -> set[str]:
        """Qualified names of the library function a call invokes (``F.softmax`` → ...)."""
        return {v.qualname for v in self.eval(call.func, module) if isinstance(v, LibRef)}

    def objects(self, expr: cst.BaseExpression, module: ModuleModel) -> list[Obj]:
        return [v for v in self.eval(expr, module) if isinstance(v, Obj)]

    def tensor_kinds(self, expr: cst.BaseExpression, module: ModuleModel) -> list[TensorV]:
        return [v for v in self.eval(expr, module) if isinstance(v, TensorV)]

    def instances(self, expr: cst.BaseExpression, module: ModuleModel) -> list[Instance]:
        return [v for v in self.eval(expr, module) if isinstance(v, Instance)]

    def functions_called(self, call: cst.Call, module: ModuleModel) -> list[FuncRef]:
        """User functions/methods a call may enter (``forward`` for ``model(x)``)."""
        found: list[FuncRef] = []
        for value in self.eval(call.func, module):
            if isinstance(value, FuncRef):
                found.append(value)
            elif isinstance(value, Instance):
                # nn.Modules run ``forward``; other callable objects (timm's loss scaler)
                # run ``__call__``.
                method = self.method(value.cls, "forward") or self.method(value.cls, "__call__")
                if method is not None:
                    found.append(FuncRef(method.module, method.node, value))
        return found

    def number(self, expr: cst.BaseExpression, module: ModuleModel) -> float | None:
        """A numeric value the expression certainly has, following simple bindings."""
        direct = literal_value(expr)
        if isinstance(direct, (int, float)) and not isinstance(direct, bool):
            return float(direct)
        values = [v for v in self.eval(expr, module)]
        numbers = {v.value for v in values if isinstance(v, Lit) and isinstance(v.value, (int, float))}
        if len(values) == 1 and len(numbers) == 1:
            return float(numbers.pop())  # type: ignore[arg-type]
        return None

    def method(self, cls: ClassRef, name: str) -> FuncRef | None:
        """``cls.name`` looked up through local base classes."""
        for klass in self.class_chain(cls):
            for statement in _class_body(klass.node):
                if isinstance(statement, cst.FunctionDef) and statement.name.value == name:
                    return FuncRef(klass.module, statement)
        return None

    def class_chain(self, cls: ClassRef) -> list[ClassRef]:
        """The class and its locally defined bases (method resolution order, roughly)."""
        chain: list[ClassRef] = []
        pending = [cls]
        while pending and len(chain) < 16:
            current = pending.pop(0)
            if any(c.node is current.node for c in chain):
                continue
            chain.append(current)
            for base in current.node.bases:
                pending.extend(v for v in self.eval(base.value, current.module) if isinstance(v, ClassRef))
        return chain

    def base_qualnames(self, cls: ClassRef) -> set[str]:
        """Library base classes of a user class (``torch.nn.Module``), through local bases."""
        names: set[str] = set()
        for klass in self.class_chain(cls):
            for base in klass.node.bases:
                names |= {v.qualname for v in self.eval(base.value, klass.module) if isinstance(v, LibRef)}
        return names

    def attribute_values(self, instance: Instance, attr: str) -> Iterator[tuple[cst.BaseExpression, tuple[int, ...], ModuleModel]]:
        """Expressions assigned to ``self.<attr>`` in the instance's class or its bases."""
        for klass in self.class_chain(instance.cls):
            for assignment in klass.module.self_attrs.get(klass.node, {}).get(attr, []):
                yield assignment.value, assignment.path, klass.module

    def returns(self, func: FuncRef) -> tuple[Value, ...]:
        """What a function returns in training mode (eval-only branches are skipped)."""
        values: list[Value] = []
        for ret in return_statements(func.node):
            if ret.value is None or _eval_only(ret, func.module):
                continue
            values.extend(self.eval(ret.value, func.module))
        return tuple(values)

    # -- evaluation ---------------------------------------------------------------------

    def _eval(self, expr: cst.BaseExpression, module: ModuleModel) -> Iterable[Value]:
        if isinstance(expr, cst.Name):
            if expr.value in ("True", "False", "None"):
                return (Lit(literal_value(expr)),)
            return self._eval_name(expr, module)
        if isinstance(expr, cst.Attribute):
            return self._eval_attribute(expr, module)
        if isinstance(expr, cst.Call):
            return self._eval_call(expr, module)
        if isinstance(expr, cst.Subscript):
            return self._eval_subscript(expr, module)
        if isinstance(expr, (cst.List, cst.Tuple)):
            return (SeqV(expr, module),)
        if isinstance(expr, cst.Dict):
            return (DictV(expr, module),)
        if isinstance(expr, cst.IfExp):
            if _is_training_test(expr.test):
                return self.eval(expr.body, module)
            return (*self.eval(expr.body, module), *self.eval(expr.orelse, module))
        if isinstance(expr, cst.NamedExpr):
            return self.eval(expr.value, module)
        if isinstance(expr, cst.Await):
            return self.eval(expr.expression, module)
        value = literal_value(expr)
        if value is not ...:
            return (Lit(value),)
        return ()

    def _eval_name(self, name: cst.Name, module: ModuleModel) -> Iterator[Value]:
        for binding in self.reaching(name, module):
            yield from self._eval_binding(binding, module)

    def reaching(self, name: cst.Name, module: ModuleModel) -> list[Binding]:
        """Bindings of ``name`` that may reach this use (nearest dominating one and later)."""
        scope: Scope | None = module.scope_of(name)
        own = True
        while scope is not None:
            bindings = scope.bindings.get(name.value)
            if bindings:
                return _reaching_in(bindings, name, module) if own else list(bindings)
            scope = scope.parent
            while scope is not None and isinstance(scope.node, cst.ClassDef):
                scope = scope.parent
            own = False
        return []

    def _eval_binding(self, binding: Binding, module: ModuleModel) -> Iterable[Value]:
        kind = binding.kind
        if kind == "import":
            return self._import_value(binding.qualname or binding.name, module)
        if kind == "def" and isinstance(binding.node, cst.FunctionDef):
            return (FuncRef(module, binding.node),)
        if kind == "class" and isinstance(binding.node, cst.ClassDef):
            return (ClassRef(module, binding.node),)
        if kind == "param":
            return self._param_values(binding, module)
        if kind in ("assign", "with") and binding.value is not None:
            return self._select(self.eval(binding.value, module), binding.path)
        return ()

    def _import_value(self, qualname: str, module: ModuleModel) -> tuple[Value, ...]:
        if not _maybe_local(LibRef(qualname)):
            return (LibRef(qualname),)
        local = self.project.resolve_symbol(module, qualname)
        if local is None:
            return (LibRef(qualname.lstrip(".")),)
        target, symbol = local
        found: list[Value] = []
        for binding in target.module_scope.bindings.get(symbol, []):
            key = id(binding)
            if key in self._active:
                continue  # an import cycle: a re-export that leads back to itself
            self._active.add(key)
            try:
                found.extend(self._eval_binding(binding, target))
            finally:
                self._active.discard(key)
        return tuple(found) or (LibRef(qualname.lstrip(".")),)

    def _param_values(self, binding: Binding, module: ModuleModel) -> list[Value]:
        function = binding.scope_node
        values: list[Value] = []
        if isinstance(function, cst.FunctionDef):
            cls = module.method_class(function)
            params = [*function.params.posonly_params, *function.params.params]
            is_self = cls is not None and params and params[0].name.value == binding.name
            if is_self and not _is_static(function):
                return [Instance(ClassRef(module, cls))]  # type: ignore[arg-type]
            values.extend(self._argument_values(function, binding.name, cls is not None, module))
        if binding.value is not None:
            values.extend(self.eval(binding.value, module))
        return values

    def _argument_values(
        self, function: cst.FunctionDef, param: str, is_method: bool, module: ModuleModel
    ) -> Iterator[Value]:
        """Values passed for ``param`` at call sites of ``function`` in loaded modules."""
        positional = [p.name.value for p in (*function.params.posonly_params, *function.params.params)]
        if is_method and positional:
            positional = positional[1:]
        index = positional.index(param) if param in positional else None
        for call, caller in self.call_sites(function, module)[:MAX_CALL_SITES]:
            arg = call_arg(call, index, param)
            if arg is not None:
                yield from self.eval(arg, caller)

    def call_sites(self, function: cst.FunctionDef, module: ModuleModel) -> list[tuple[cst.Call, ModuleModel]]:
        """Calls of ``function`` (defined in ``module``) in loaded modules and sibling scripts."""
        name = _called_as(function, module)
        return [
            (call, caller)
            for caller in self.project.callers_of(name, module)
            for call in caller.calls_by_name.get(name, [])
            if self.may_call(call, caller, function, module)
        ]

    def may_call(
        self, call: cst.Call, caller: ModuleModel, function: cst.FunctionDef, module: ModuleModel
    ) -> bool:
        """Does ``call`` (in ``caller``) invoke ``function``? A same-named function of another
        script must not lend it its arguments. Unresolvable receivers count only within the
        defining module."""
        if self._method_call(call, caller, function, module):
            return False
        targets = self.eval(call.func, caller)
        if not targets:
            return caller is module
        for target in targets:
            if isinstance(target, FuncRef) and target.node is function:
                return True
            if isinstance(target, ClassRef) and any(
                isinstance(s, cst.FunctionDef) and s is function for s in _class_body(target.node)
            ):
                return True
        return False

    def _method_call(self, call: cst.Call, caller: ModuleModel, function: cst.FunctionDef, module: ModuleModel) -> bool:
        """``model.train()``, ``criteria[i].train()``: a method of some object, never the
        script's own top-level ``def train(...)``, which an attribute call reaches only
        through a name an import binds. Decided without evaluating the receiver."""
        func = call.func
        if not isinstance(func, cst.Attribute) or module.method_class(function) is not None:
            return False
        receiver = func.value
        return not isinstance(receiver, cst.Name) or not any(b.kind == "import" for b in self.reaching(receiver, caller))

    def _select(self, values: Iterable[Value], path: tuple[int, ...]) -> list[Value]:
        current = list(values)
        for index in path:
            picked: list[Value] = []
            for value in current:
                if not isinstance(value, SeqV):
                    continue
                elements = value.node.elements
                if -len(elements) <= index < len(elements) and not any(
                    isinstance(e, cst.StarredElement) for e in elements
                ):
                    element = elements[index].value
                    picked.extend(self.eval(element, value.module))
            current = picked
        return current

    def _eval_attribute(self, expr: cst.Attribute, module: ModuleModel) -> Iterator[Value]:
        attr = expr.attr.value
        for receiver in self.eval(expr.value, module):
            if isinstance(receiver, LibRef):
                qualname = f"{receiver.qualname}.{attr}"
                if _maybe_local(receiver):
                    yield from self._import_value(qualname, module)
                else:
                    yield LibRef(qualname)
            elif isinstance(receiver, Instance):
                yield from self._instance_attribute(receiver, attr)
            elif isinstance(receiver, ClassRef):
                method = self.method(receiver, attr)
                if method is not None:
                    yield method
            elif isinstance(receiver, Obj) and attr == "module" and receiver.qualname in T.MODEL_WRAPPERS:
                # ``ddp_model.module`` is the wrapped model.
                yield from self._wrapped(receiver)

    def _instance_attribute(self, instance: Instance, attr: str) -> Iterator[Value]:
        method = self.method(instance.cls, attr)
        if method is not None:
            yield FuncRef(method.module, method.node, instance)
            return
        for value, path, owner in self.attribute_values(instance, attr):
            yield from self._select(self.eval(value, owner), path)

    def _wrapped(self, wrapper: Obj) -> tuple[Value, ...]:
        first = call_arg(wrapper.call, 0, "module") or call_arg(wrapper.call, 0, "model")
        return self.eval(first, wrapper.module) if first is not None else ()

    def _eval_subscript(self, expr: cst.Subscript, module: ModuleModel) -> Iterator[Value]:
        index = None
        if len(expr.slice) == 1 and isinstance(expr.slice[0].slice, cst.Index):
            index = literal_value(expr.slice[0].slice.value)
        for value in self.eval(expr.value, module):
            if isinstance(value, TensorV) and value.kind != "loss":
                yield value  # probs[:, 1] and probs[range(n), y] are still probabilities
            elif isinstance(value, SeqV) and isinstance(index, int):
                yield from self._select((value,), (index,))
            elif isinstance(value, DictV) and isinstance(index, str):
                # ``loaders["train"]``: the entry of a dict literal
                for element in value.node.elements:
                    if isinstance(element, cst.DictElement) and literal_value(element.key) == index:
                        yield from self.eval(element.value, value.module)

    def _eval_call(self, call: cst.Call, module: ModuleModel) -> Iterator[Value]:
        func = call.func
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            if method == "prepare" and any(o.qualname in brains.ACCELERATORS for o in self.objects(func.value, module)):
                yield from self._prepared(call, module)
                return
            if method in T.TENSOR_METHOD_KINDS:
                receiver = self.eval(func.value, module)
                if not any(isinstance(v, (LibRef, Instance, ClassRef)) for v in receiver):
                    yield TensorV(T.TENSOR_METHOD_KINDS[method], call, module)
                    return
            if method in T.PASS_THROUGH_METHODS:
                yield from (v for v in self.eval(func.value, module) if not isinstance(v, (LibRef, ClassRef, FuncRef)))
                return
            if method == "log" and not call.args:
                yield from _manual_log(self.eval(func.value, module), call, module)
                return
        for callee in self.eval(func, module):
            yield from self._apply(callee, call, module)

    def _prepared(self, call: cst.Call, module: ModuleModel) -> tuple[Value, ...]:
        """``accelerator.prepare(model, optimizer, loader, scheduler)`` returns its arguments,
        wrapped but with the same meaning, in the same order (one argument: not a tuple)."""
        args = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
        if len(args) != len(call.args):
            return ()
        if len(args) == 1:
            return self.eval(args[0], module)
        return (SeqV(cst.Tuple([cst.Element(arg) for arg in args]), module),)

    def _apply(self, callee: Value, call: cst.Call, module: ModuleModel) -> Iterator[Value]:
        if isinstance(callee, LibRef):
            yield from self._apply_library(callee.qualname, call, module)
        elif isinstance(callee, ClassRef):
            yield Instance(callee, call, module)
        elif isinstance(callee, FuncRef):
            yield from (_built_by(value, callee, call, module) for value in self.returns(callee))
        elif isinstance(callee, Instance):
            forward = self.method(callee.cls, "forward")
            if forward is not None:
                yield from self.returns(FuncRef(forward.module, forward.node, callee))
        elif isinstance(callee, Obj):
            yield from self._call_object(callee, call, module)

    def _apply_library(self, qualname: str, call: cst.Call, module: ModuleModel) -> Iterator[Value]:
        kind = T.TENSOR_FUNCTION_KINDS.get(qualname)
        if kind is not None:
            yield TensorV(kind, call, module)
        elif qualname in T.LOG_FUNCTIONS:
            first = call_arg(call, 0, "input")
            if first is not None:
                yield from _manual_log(self.eval(first, module), call, module)
        elif qualname in T.MODEL_WRAPPERS or qualname in T.IDENTITY_FUNCTIONS:
            first = call_arg(call, 0, "module") or call_arg(call, 0, "model")
            if first is not None:
                yield from self.eval(first, module)
            if qualname in T.MODEL_WRAPPERS or qualname in T.COPY_FUNCTIONS:
                # A deep copy is another object (an EMA model), with the same code.
                yield Obj(qualname, call, module)
        elif qualname in T.LOSS_FUNCTIONS:
            yield TensorV("loss", call, module)
        elif qualname in T.JOIN_FUNCTIONS:
            yield from self._joined(call, module)
        elif qualname == "typing.cast":
            second = call_arg(call, 1, "val")
            if second is not None:
                yield from self.eval(second, module)
        else:
            yield Obj(qualname, call, module)

    def _joined(self, call: cst.Call, module: ModuleModel) -> Iterator[Value]:
        """``torch.cat([p1, p2])`` keeps the tensor kind its parts share; a mix has none."""
        parts = call_arg(call, 0, "tensors")
        sequences = [v for v in self.eval(parts, module) if isinstance(v, SeqV)] if parts is not None else []
        if len(sequences) != 1 or not sequences[0].node.elements:
            return
        kinds: set[str] = set()
        for element in sequences[0].node.elements:
            found = {v.kind for v in self.eval(element.value, sequences[0].module) if isinstance(v, TensorV)}
            if len(found) != 1 or isinstance(element, cst.StarredElement):
                return
            kinds |= found
        if len(kinds) == 1:
            yield TensorV(kinds.pop(), call, module)

    def _call_object(self, obj: Obj, call: cst.Call, module: ModuleModel) -> Iterator[Value]:
        """Calling an ``nn.Module``-like library object: ``nn.Softmax(dim=1)(x)``."""
        kind = T.MODULE_CLASS_KINDS.get(obj.qualname)
        if kind is not None:
            yield TensorV(kind, call, module)
        elif obj.qualname in T.LOSS_CLASSES:
            yield TensorV("loss", call, module)
        elif obj.qualname == "torch.nn.Sequential" and obj.call.args:
            last = obj.call.args[-1]
            if not last.star:
                for layer in self.eval(last.value, obj.module):
                    yield from self._apply(layer, call, module)
        elif obj.qualname in T.MODEL_WRAPPERS:
            for inner in self._wrapped(obj):
                yield from self._apply(inner, call, module)


def _built_by(value: Value, factory: FuncRef, call: cst.Call, module: ModuleModel) -> Value:
    """An object ``factory`` constructs and returns is a new one at every call of it: it
    keeps its constructor call and records ``call`` as the one that built it."""
    if isinstance(value, Instance) and value.site is not None and value.where is not None:
        inner = value.via or Via(value.site, value.where)
    elif isinstance(value, Obj):
        inner = value.via or Via(value.call, value.module)
    else:
        return value
    if inner.module is not factory.module or not factory.module.is_within(inner.call, factory.node):
        return value  # passed in, or a global: the same object at every call
    return replace(value, via=Via(call, module))


def _manual_log(values: Iterable[Value], call: cst.Call, module: ModuleModel) -> Iterator[Value]:
    if any(isinstance(v, TensorV) and v.kind in ("probs", "sigmoid") for v in values):
        yield TensorV("manual_log_probs", call, module)


def _maybe_local(ref: LibRef) -> bool:
    """Library names never resolve to local files; skip the file-system lookup for them."""
    return ref.qualname.split(".")[0] not in brains.KNOWN_LIBRARIES


def _reaching_in(bindings: list[Binding], use: cst.Name, module: ModuleModel) -> list[Binding]:
    order = module.order_of(use, 0)
    before = [b for b in bindings if b.order < order and not _is_own_target(b, use, module)]
    if not before:
        # Defined later in a loop (carried from a previous iteration) or not at all.
        return [b for b in bindings if not _is_own_target(b, use, module)]
    picked: list[Binding] = []
    for binding in reversed(before):
        picked.append(binding)
        if binding.kind in ("param", "def", "class", "import") or module.dominates(binding.node, use):
            break
    return picked


def _is_own_target(binding: Binding, use: cst.Name, module: ModuleModel) -> bool:
    """``x = f(x)``: the use on the right-hand side does not see this very binding."""
    return binding.kind != "param" and module.is_within(use, binding.node)


def _called_as(function: cst.FunctionDef, module: ModuleModel) -> str:
    """The name call sites use: ``Trainer(model)`` invokes ``Trainer.__init__``."""
    cls = module.method_class(function)
    if cls is not None and function.name.value == "__init__":
        return cls.name.value
    return function.name.value


def _is_static(function: cst.FunctionDef) -> bool:
    return any(dotted(d.decorator) == "staticmethod" for d in function.decorators)


def _class_body(node: cst.ClassDef) -> list[cst.CSTNode]:
    body = node.body
    return list(body.body) if isinstance(body, cst.IndentedBlock) else []


def return_statements(function: cst.FunctionDef) -> Iterator[cst.Return]:
    """Return statements of ``function`` itself (not of nested functions)."""
    stack: list[cst.CSTNode] = [function.body]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Return):
            yield node
        elif isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
            continue
        elif isinstance(node, cst.BaseSuite):
            stack.extend(reversed(node.body))  # type: ignore[arg-type]
        elif isinstance(node, cst.SimpleStatementLine):
            stack.extend(node.body)
        elif isinstance(node, cst.BaseCompoundStatement):
            stack.extend(_compound_blocks(node))


def _compound_blocks(node: cst.BaseCompoundStatement) -> list[cst.CSTNode]:
    if isinstance(node, cst.Match):
        return [case.body for case in node.cases]
    blocks: list[cst.CSTNode] = [node.body]
    for attr in ("orelse", "finalbody"):
        extra = getattr(node, attr, None)
        if extra is not None:
            blocks.append(extra.body if isinstance(extra, (cst.Else, cst.Finally)) else extra)
    blocks.extend(getattr(node, "handlers", ()))
    if isinstance(node, cst.ExceptHandler):
        return [node.body]
    return blocks


def _is_training_test(test: cst.BaseExpression) -> bool:
    return dotted(test) == "self.training"


def _eval_only(ret: cst.Return, module: ModuleModel) -> bool:
    """Is ``ret`` reachable only in eval mode? True inside ``if not self.training:``, in the
    ``else`` of ``if self.training:``, and after an ``if self.training: return ...``."""
    child: cst.CSTNode = ret
    for ancestor in module.ancestors(ret):
        if isinstance(ancestor, cst.FunctionDef):
            return False
        if isinstance(ancestor, cst.If):
            polarity = _training_polarity(ancestor.test)
            if polarity is not None and (child is ancestor.body) != polarity:
                return True
        if isinstance(ancestor, cst.IndentedBlock) and _training_returned_before(ancestor, child):
            return True
        child = ancestor
    return False


def _training_polarity(test: cst.BaseExpression) -> bool | None:
    """True for ``self.training``, False for ``not self.training``, else None."""
    if _is_training_test(test):
        return True
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not) and _is_training_test(test.expression):
        return False
    return None


def _training_returned_before(block: cst.IndentedBlock, child: cst.CSTNode) -> bool:
    for statement in block.body:
        if statement is child:
            return False
        if (
            isinstance(statement, cst.If)
            and _training_polarity(statement.test) is True
            and statement.orelse is None
            and isinstance(statement.body, cst.IndentedBlock)
            and any(isinstance(s, cst.SimpleStatementLine) and isinstance(s.body[-1], cst.Return) for s in statement.body.body[-1:])
        ):
            return True
    return False


def _identity(value: Value) -> object:
    if isinstance(value, (LibRef, Lit)):
        return value
    via = id(value.via.call) if isinstance(value, (Obj, Instance)) and value.via is not None else None
    if isinstance(value, Obj):
        return ("obj", id(value.call), via)
    if isinstance(value, ClassRef):
        return ("class", id(value.node))
    if isinstance(value, Instance):
        return ("instance", id(value.cls.node), id(value.site) if value.site is not None else None, via)
    if isinstance(value, FuncRef):
        return ("function", id(value.node), id(value.bound.cls.node) if value.bound else None)
    if isinstance(value, TensorV):
        return ("tensor", value.kind, id(value.origin))
    return ("node", id(value.node))


def _dedupe(values: Iterable[Value]) -> Iterator[Value]:
    seen: set[object] = set()
    for value in values:
        identity = _identity(value)
        if identity not in seen:
            seen.add(identity)
            yield value
