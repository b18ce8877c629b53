"""Which object an expression denotes, per call site: the keys training state is kept under.

A helper ``def step(opt): opt.step()`` is analysed once per call site: its parameters are
bound to the caller's arguments (a :class:`Frame`), so ``opt`` is ``optimizer_d`` at one
call and ``optimizer_g`` at another, never a merge of both. An expression resolves to the
objects that may have built it (the allocation sites the evaluator finds; two calls of one
factory function are two sites) and, when those are unknown, to its text in the scope that
binds its first name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import libcst as cst

from trainlint.analysis import brains
from trainlint.analysis.brains import Kind
from trainlint.analysis.ir import value_kind
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.names import dotted
from trainlint.analysis.values import ClassRef, Evaluator, Instance, Obj, Value, call_arg

MAX_ALIAS_DEPTH = 4
# Methods returning the module they are called on (``model.to(device)``): same object.
_SAME_OBJECT_METHODS = frozenset({"to", "cuda", "cpu", "float", "half", "double", "bfloat16", "train", "requires_grad_"})


class Relation(enum.Enum):
    SAME = "same"
    MAYBE = "maybe"  # cannot tell: an unresolved name next to a known object
    DIFFERENT = "different"


@dataclass(frozen=True)
class Key:
    """An object training state is kept for. Identity is ``ident``: the allocation sites
    when known, else the scoped text of the expression."""

    ident: tuple[object, ...]
    label: str = field(compare=False)
    kind: Kind | None = field(compare=False, default=None)
    values: tuple[Value, ...] = field(compare=False, default=())
    # Keys index every table of every state and are compared with every other key of a
    # state by each clear: their hash and what ``relation`` reads are computed once (the
    # hash the generated ``__hash__`` would give, so that tables keep their order).
    _hash: int = field(init=False, compare=False, repr=False)
    sites: frozenset[object] = field(init=False, compare=False, repr=False)  # allocation sites, when known
    text: str | None = field(init=False, compare=False, repr=False)  # the scoped text, when sites are unknown
    _scope: str | None = field(init=False, compare=False, repr=False)
    _copies: frozenset[object] = field(init=False, compare=False, repr=False)
    _made_by: frozenset[object] = field(init=False, compare=False, repr=False)  # constructor calls, via any factory call
    _made_directly_by: frozenset[object] = field(init=False, compare=False, repr=False)  # those of sites no factory call marks
    _selves: frozenset[int] = field(init=False, compare=False, repr=False)  # classes whose ``self`` it may be
    _classes: frozenset[int] = field(init=False, compare=False, repr=False)  # classes it may be an instance of

    def __post_init__(self) -> None:
        sites: frozenset[object] = self.ident[1] if self.ident[0] == "s" else frozenset()  # type: ignore[assignment]
        instances = [v for v in self.values if isinstance(v, Instance)]
        text: str | None = self.ident[1] if self.ident[0] == "t" else None  # type: ignore[assignment]
        object.__setattr__(self, "_hash", hash((self.ident,)))
        object.__setattr__(self, "sites", sites)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "_scope", _scope(text) if text is not None else None)
        object.__setattr__(self, "_copies", frozenset(site for site in sites if isinstance(site, tuple) and site[0] == "copy"))
        object.__setattr__(self, "_made_by", _constructors(sites))
        object.__setattr__(self, "_made_directly_by", _constructors(_plain(sites)))
        object.__setattr__(self, "_selves", frozenset(id(v.cls.node) for v in instances if v.site is None))
        object.__setattr__(self, "_classes", frozenset(id(v.cls.node) for v in instances))

    def __hash__(self) -> int:
        return self._hash

    def built_at(self, node: cst.CSTNode) -> bool:
        """The object may have been constructed by ``node`` (directly or in a factory)."""
        return id(node) in self._made_by

    def is_part_of(self, other: Key) -> bool:
        """``model.backbone`` is part of ``model`` (by their paths from the same root)."""
        mine, theirs = self.text, other.text
        if mine is not None and theirs is not None:
            return mine.startswith(theirs + ".")
        return self.label.startswith(other.label + ".")


def relation(a: Key, b: Key) -> Relation:
    if a is b or a.ident == b.ident:
        return Relation.SAME
    if a._scope is not None and a._scope == b._scope:
        # Two names (or attributes) of one scope are two objects, unless one is part of the
        # other: aliases (``net = model``) resolve to the same key.
        return Relation.MAYBE if a.is_part_of(b) or b.is_part_of(a) else Relation.DIFFERENT
    if a.kind is not None and b.kind is not None and a.kind is not b.kind:
        return Relation.DIFFERENT
    if a._copies != b._copies:
        return Relation.DIFFERENT  # a deep copy (an EMA model) is no other object
    if a.sites and b.sites:
        if not a.sites.isdisjoint(b.sites) or not a._made_directly_by.isdisjoint(b._made_by) or not b._made_directly_by.isdisjoint(a._made_by):
            return Relation.MAYBE  # one constructor, and not two calls of a factory known apart
        return Relation.MAYBE if _same_class(a, b) else Relation.DIFFERENT
    return Relation.MAYBE


def _scope(text: str) -> str:
    return text.rsplit(":", 1)[0]


def _plain(sites: frozenset[object]) -> frozenset[object]:
    return frozenset(site for site in sites if not (isinstance(site, tuple) and site[0] == "via"))


def _constructors(sites: frozenset[object]) -> frozenset[object]:
    """The constructor calls of allocation sites, whichever factory call built them."""
    return frozenset(site[1] if isinstance(site, tuple) and site[0] == "via" else site for site in sites)


def _same_class(a: Key, b: Key) -> bool:
    """``self`` inside a class's methods may be any instance of it."""
    return bool(a._selves & b._classes or b._selves & a._classes)


@dataclass(eq=False)
class Frame:
    """One activation of a function: where it was called from, and what its parameters
    are bound to there (an argument expression, evaluated in the caller's frame)."""

    function: cst.FunctionDef | None  # None: module-level code
    module: ModuleModel
    parent: Frame | None = None
    site: cst.CSTNode | None = None
    bindings: dict[str, tuple[cst.BaseExpression, ModuleModel, Frame | None]] = field(default_factory=dict)
    depth: int = 0

    def chain(self) -> list[Frame]:
        """This frame and its callers, innermost first."""
        frames: list[Frame] = []
        current: Frame | None = self
        while current is not None:
            frames.append(current)
            current = current.parent
        return frames

    def active(self, function: cst.FunctionDef) -> bool:
        return any(frame.function is function for frame in self.chain())


def variable(frame: Frame, name: str) -> str:
    """The key of a local variable in one activation of its function."""
    return f"{id(frame)}:{name}"


def home(frame: Frame, name: str, depth: int = 0) -> str:
    """The variable ``name`` denotes in one activation, followed to where it lives: a
    parameter given a plain name is the caller's variable; a module-level name a function
    reads is the module code's (when that code is the caller)."""
    if frame.function is not None and depth < MAX_ALIAS_DEPTH:
        scope = frame.module.scopes.get(frame.function)
        bindings = scope.bindings.get(name) if scope is not None else None
        if not bindings:
            outer = next((f for f in frame.chain() if f.function is None and f.module is frame.module), None)
            if outer is not None:
                return variable(outer, name)
        elif all(b.kind == "param" for b in bindings):
            bound = frame.bindings.get(name)
            if bound is not None and isinstance(bound[0], cst.Name) and bound[2] is not None:
                return home(bound[2], bound[0].value, depth + 1)
    return variable(frame, name)


class Resolver:
    """Expressions to keys, per frame; memoized for unbound (context-free) expressions."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.ev = evaluator
        self._free: dict[int, Key] = {}

    def key(self, expr: cst.BaseExpression, module: ModuleModel, frame: Frame | None, depth: int = 0) -> Key:
        expr = _strip(expr)
        root, attrs = _chain(expr)
        if root is not None and frame is not None and depth < MAX_ALIAS_DEPTH:
            bound = self._bound(root, module, frame)
            if bound is not None:
                argument, argument_module, argument_frame = bound
                return self.extend(self.key(argument, argument_module, argument_frame, depth + 1), attrs, expr, module)
        cached = self._free.get(id(expr))
        if cached is None:
            alias = self._alias(expr, module) if depth < MAX_ALIAS_DEPTH else None
            if alias is not None:
                cached = self.key(alias, module, frame, depth + 1)
            else:
                cached = self._evaluated(expr, module, root)
            self._free[id(expr)] = cached
        return cached

    def _alias(self, expr: cst.BaseExpression, module: ModuleModel) -> cst.BaseExpression | None:
        """``net = model`` (the only binding of ``net``, ``model`` unknown): ``net`` is
        ``model``."""
        if not isinstance(expr, cst.Name) or self.ev.eval(expr, module):
            return None
        bindings = module.scope_of(expr).bindings.get(expr.value, [])
        if len(bindings) != 1 or bindings[0].kind != "assign" or bindings[0].path or bindings[0].value is None:
            return None
        value = _strip(bindings[0].value)
        inner, _ = _chain(value)
        return value if inner is not None and inner != expr.value else None

    def extend(self, base: Key, attrs: list[str], expr: cst.BaseExpression, module: ModuleModel) -> Key:
        """``base.a.b``: through the evaluator when ``base`` is a known object, else by text."""
        if not attrs:
            return base
        values = base.values
        for attr in attrs:
            values = tuple(v for value in values for v in self._attribute(value, attr))
        label = ".".join([base.label, *attrs])
        sites = _sites(values)
        if sites is not None:
            return Key(("s", sites), label, _kind(values, attrs[-1], self.ev), values)
        return Key(("t", ".".join([_prefix(base), *attrs])), label, _kind((), attrs[-1], self.ev))

    def _attribute(self, value: Value, attr: str) -> tuple[Value, ...]:
        if isinstance(value, Instance):
            found: list[Value] = []
            for expr, path, owner in self.ev.attribute_values(value, attr):
                found.extend(self.ev._select(self.ev.eval(expr, owner), path))
            return tuple(found)
        if isinstance(value, Obj) and attr == "module" and value.qualname in brains.torch.MODEL_WRAPPERS:
            first = call_arg(value.call, 0, "module") or call_arg(value.call, 0, "model")
            return self.ev.eval(first, value.module) if first is not None else ()
        return ()

    def _bound(self, root: str, module: ModuleModel, frame: Frame) -> tuple[cst.BaseExpression, ModuleModel, Frame | None] | None:
        if frame.module is not module:
            return None
        found = frame.bindings.get(root)
        if found is not None:
            return found
        if frame.function is None:
            return None
        # A local alias of a bound name: ``opt = optimizer`` / ``model = self.model``.
        bindings = module.scopes[frame.function].bindings.get(root, []) if frame.function in module.scopes else []
        if len(bindings) == 1 and bindings[0].kind == "assign" and not bindings[0].path and bindings[0].value is not None:
            value = bindings[0].value
            inner, _ = _chain(_strip(value))
            if inner is not None and inner != root and (inner in frame.bindings or inner == "self"):
                return value, module, frame
        return None

    def _evaluated(self, expr: cst.BaseExpression, module: ModuleModel, root: str | None) -> Key:
        values = self.ev.eval(expr, module)
        label = dotted(expr) or module.tree.code_for_node(expr).strip()
        attrs = _chain(expr)[1]
        sites = _sites(values)
        kind = _kind(values, attrs[-1] if attrs else root, self.ev)
        if sites is not None:
            return Key(("s", sites), label, kind, values)
        return Key(("t", self._scoped(expr, module, root, label)), label, kind, values)

    def _scoped(self, expr: cst.BaseExpression, module: ModuleModel, root: str | None, label: str) -> str:
        """The text of ``expr`` qualified by the scope that binds its first name: two
        functions' ``model`` are not the same object; ``self`` is its class."""
        if root is None:
            return f"{module.path}:{id(expr)}"
        scope = module.scope_of(expr)
        while scope is not None and root not in scope.bindings and scope.parent is not None:
            scope = scope.parent
        node = scope.node if scope is not None else module.tree
        if root == "self" and isinstance(node, cst.FunctionDef):
            cls = module.method_class(node)
            if cls is not None:
                return f"{_self_text(module, cls)}{label[len('self'):]}"
        where = node.name.value if isinstance(node, (cst.FunctionDef, cst.ClassDef)) else ""
        return f"{module.path}:{where}#{module.order_of(node, 0)}:{label}"


def _self_text(module: ModuleModel, cls: cst.ClassDef) -> str:
    """``self`` of a class's methods, as the text keys of its attributes start."""
    return f"{module.path}:{cls.name.value}:self"


def _prefix(base: Key) -> str:
    """The text an attribute key extends: ``self`` of one class keeps the class's own
    spelling, so ``self.model`` is the same key in every method, bound or not."""
    selves = {(id(v.cls.node), v.cls.module, v.cls.node) for v in base.values if isinstance(v, Instance) and v.site is None}
    if len(selves) == 1 and len(base.values) == 1:
        _, module, node = selves.pop()
        return _self_text(module, node)
    return base.text if base.text is not None else f"{sorted(map(str, base.sites))}"


def _strip(expr: cst.BaseExpression) -> cst.BaseExpression:
    """``model.to(device)``, ``ddp_model.module``: the same object."""
    while True:
        if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in _SAME_OBJECT_METHODS:
            expr = expr.func.value
        elif isinstance(expr, cst.Attribute) and expr.attr.value == "module" and isinstance(expr.value, (cst.Name, cst.Attribute)):
            expr = expr.value
        else:
            return expr


def _chain(expr: cst.BaseExpression) -> tuple[str | None, list[str]]:
    """``("self", ["model", "encoder"])`` for ``self.model.encoder``."""
    attrs: list[str] = []
    while isinstance(expr, cst.Attribute):
        attrs.append(expr.attr.value)
        expr = expr.value
    if isinstance(expr, cst.Name):
        return expr.value, list(reversed(attrs))
    return None, []


def _sites(values: tuple[Value, ...]) -> frozenset[object] | None:
    """Allocation sites of objects; ``None`` when any value is not an allocated object."""
    copies = [v for v in values if isinstance(v, Obj) and v.qualname in brains.torch.COPY_FUNCTIONS]
    if copies:
        return frozenset(("copy", id(v.call)) for v in copies)  # a deep copy is its own object
    sites: set[object] = set()
    for value in values:
        if isinstance(value, Obj):
            sites.add(_site(id(value.call), value))
        elif isinstance(value, Instance):
            sites.add(_site(id(value.site), value) if value.site is not None else ("class", id(value.cls.node)))
        elif isinstance(value, ClassRef):
            return None
        else:
            continue  # a literal None (``scaler = None if ... else GradScaler()``) is no object
    return frozenset(sites) if sites else None


def _site(constructor: int, value: Obj | Instance) -> object:
    """An allocation site; objects a factory returns are told apart by the factory's call."""
    return ("via", constructor, id(value.via.call)) if value.via is not None else constructor


def _kind(values: tuple[Value, ...], name: str | None, ev: Evaluator) -> Kind | None:
    kinds = {value_kind(v, ev) for v in values}
    kinds.discard(None)
    if len(kinds) == 1:
        return kinds.pop()
    if kinds:
        return None
    return brains.kind_from_name(name)
