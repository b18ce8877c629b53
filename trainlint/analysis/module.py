"""One pass over a parsed file: parents, source order, scopes, bindings, calls and loops.

Everything later analyses need about a single module is indexed here once, so that rules
never re-walk the tree.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar, Union

import libcst as cst
from libcst.metadata import CodeRange

from trainlint.analysis.names import dotted, module_dotted, relative_prefix, terminal_name
from trainlint.analysis.parsing import ParsedModule
from trainlint.analysis.positions import Positions
from trainlint.analysis.walk import iter_children

ScopeNode = Union[cst.Module, cst.FunctionDef, cst.ClassDef, cst.Lambda]
N = TypeVar("N", bound=cst.CSTNode)
T = TypeVar("T")
_MISSING = object()
Loop = Union[cst.For, cst.While]
BindingKind = Literal["assign", "aug", "for", "with", "param", "import", "def", "class"]

# Nodes whose bodies run only on some paths: used to decide whether an assignment or an
# action dominates a later point.
CONDITIONAL = (cst.If, cst.Else, cst.For, cst.While, cst.Try, cst.ExceptHandler, cst.IfExp,
               cst.BooleanOperation, cst.Match if hasattr(cst, "Match") else cst.If)


@dataclass(eq=False)
class Scope:
    node: ScopeNode
    parent: Scope | None
    bindings: dict[str, list[Binding]] = field(default_factory=lambda: defaultdict(list))

    @property
    def is_function(self) -> bool:
        return isinstance(self.node, (cst.FunctionDef, cst.Lambda))


@dataclass(eq=False)
class Binding:
    """One place where a name gets a value.

    ``value`` is the expression the name is bound from (the right-hand side, the iterable of
    a ``for``, a parameter's default); ``path`` indexes into tuple unpacking of that value.
    """

    name: str
    kind: BindingKind
    node: cst.CSTNode
    value: cst.BaseExpression | None
    path: tuple[int, ...]
    order: int
    # The scope's node, not the Scope: a back-reference would make every Scope a reference
    # cycle, which only a full garbage collection (costly with many trees alive) frees.
    scope_node: ScopeNode
    qualname: str | None = None


@dataclass(eq=False)
class AttrAssignment:
    """``self.<attr> = value`` inside a method of a class."""

    value: cst.BaseExpression
    path: tuple[int, ...]
    method: cst.FunctionDef


class ModuleModel:
    """The index of one parsed module; ``digest``: the content hash of the bytes it was
    parsed from (cache entries record it)."""

    def __init__(self, path: Path, parsed: ParsedModule, dotted_name: str, digest: str) -> None:
        self.path = path
        self.tree = tree = parsed.tree
        self.dotted_name = dotted_name
        self.digest = digest
        # Keyed by ``id(node)``: CSTNode hashes in Python, and these maps get an entry for
        # every node of every parsed file. The tree keeps the nodes (and ids) alive.
        self._parents: dict[int, cst.CSTNode] = {}
        self._orders: dict[int, int] = {}  # pre-order index
        self._ends: dict[int, int] = {}  # pre-order index of the last node of the subtree
        self.scopes: dict[cst.CSTNode, Scope] = {}
        self.calls: list[cst.Call] = []
        self.calls_by_name: dict[str, list[cst.Call]] = defaultdict(list)
        # Calls by innermost enclosing function (``None``: module level), in source order.
        self.calls_by_function: dict[cst.FunctionDef | None, list[cst.Call]] = defaultdict(list)
        self.loops: list[Loop] = []
        self.functions: list[cst.FunctionDef] = []
        self.classes: dict[str, cst.ClassDef] = {}
        self.class_of_method: dict[cst.FunctionDef, cst.ClassDef] = {}
        self.self_attrs: dict[cst.ClassDef, dict[str, list[AttrAssignment]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.aug_assigns: list[cst.AugAssign] = []
        self.assigns: list[cst.Assign] = []
        self._receivers: dict[tuple[str, ...], frozenset[str]] = {}
        self._index_orders: dict[int, list[int]] = {}
        self._index_lists: list[object] = []
        self._derived: dict[Hashable, object] = {}
        self.module_scope = Scope(tree, None)
        self.scopes[tree] = self.module_scope
        _Indexer(self).run()
        self._positions = Positions(parsed, self._parents)

    @property
    def is_test(self) -> bool:
        """A test file: ``test_*.py``, ``*_test.py``, or under a ``tests``/``test`` folder.
        Tests call ``forward`` and load their own fixtures on purpose."""
        name = self.path.name
        return name.startswith("test_") or name.endswith("_test.py") or any(p in ("tests", "test") for p in self.path.parts[:-1])

    def span_of(self, node: cst.CSTNode) -> CodeRange | None:
        """Position of ``node``, as libcst's PositionProvider gives it."""
        return self._positions.span_of(node)

    def receivers_of(self, methods: tuple[str, ...]) -> frozenset[str]:
        """Names something calls one of ``methods`` on (``netD`` in ``netD.zero_grad()``)."""
        found = self._receivers.get(methods)
        if found is None:
            found = self._receivers[methods] = frozenset(
                name
                for method in methods
                for call in self.calls_by_name.get(method, [])
                if isinstance(call.func, cst.Attribute) and (name := terminal_name(call.func.value)) is not None
            )
        return found

    def parent_of(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self._parents.get(id(node))

    def order_of(self, node: cst.CSTNode, default: int | None = None) -> int:
        """Pre-order index of ``node`` in the file; ``default`` for nodes not indexed
        (inside annotations and f-strings), a KeyError without one."""
        order = self._orders.get(id(node), default)
        if order is None:
            raise KeyError(node)
        return order

    def line_of(self, node: cst.CSTNode) -> int | None:
        where = self.span_of(node)
        return where.start.line if where is not None else None

    def where(self, node: cst.CSTNode) -> str:
        """``model.py:23``: a short location for messages that point into this module."""
        line = self.line_of(node)
        return f"{self.path.name}:{line}" if line is not None else self.path.name

    # -- structural queries -------------------------------------------------------------

    def ancestors(self, node: cst.CSTNode) -> list[cst.CSTNode]:
        """Parents of ``node``, innermost first."""
        chain: list[cst.CSTNode] = []
        current = self.parent_of(node)
        while current is not None:
            chain.append(current)
            current = self.parent_of(current)
        return chain

    def scope_of(self, node: cst.CSTNode) -> Scope:
        parents, scopes = self._parents, self.scopes
        current = parents.get(id(node))
        while current is not None:
            if type(current) in _SCOPE_NODES:
                scope = scopes.get(current)
                if scope is not None:
                    return scope
            current = parents.get(id(current))
        return self.module_scope

    def enclosing_function(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        # Exact types and parent links directly: asked for nearly every node an analysis
        # looks at, and ``isinstance`` against libcst's classes (ABCs) is slow.
        parents = self._parents
        current = parents.get(id(node))
        while current is not None:
            if type(current) is cst.FunctionDef:
                return current  # type: ignore[return-value]
            current = parents.get(id(current))
        return None

    def enclosing_loops(self, node: cst.CSTNode) -> list[Loop]:
        """Loops around ``node`` inside its own function, innermost first."""
        loops: list[Loop] = []
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, (cst.FunctionDef, cst.Lambda, cst.ClassDef)):
                break
            if isinstance(ancestor, (cst.For, cst.While)) and not self._in_loop_header(
                node, ancestor
            ):
                loops.append(ancestor)
        return loops

    def _in_loop_header(self, node: cst.CSTNode, loop: Loop) -> bool:
        header = loop.iter if isinstance(loop, cst.For) else loop.test
        return self.is_within(node, header)

    def is_within(self, node: cst.CSTNode, container: cst.CSTNode) -> bool:
        """``node`` is ``container`` or inside it: a pre-order interval test, O(1)."""
        if node is container:
            return True
        order, start = self._orders.get(id(node)), self._orders.get(id(container))
        if order is None or start is None:
            return False
        return start < order <= self._ends.get(id(container), start)

    def within(self, nodes: list[N], container: cst.CSTNode) -> list[N]:
        """The nodes of a source-ordered index list (``calls``, ``calls_by_name[...]``,
        ``calls_by_function[...]``) that are ``container`` or inside it: ``[n for n in nodes
        if self.is_within(n, container)]`` by bisection, so that asking it for every loop
        or class of a large file stays linear."""
        start = self._orders.get(id(container))
        if start is None or not nodes:
            return [node for node in nodes if node is container]
        orders = self._index_orders.get(id(nodes))
        if orders is None:
            orders = [self._orders[id(node)] for node in nodes]
            self._index_orders[id(nodes)] = orders
            self._index_lists.append(nodes)  # alive while its id is a key
        end = self._ends.get(id(container), start)
        return nodes[bisect_left(orders, start) : bisect_right(orders, end)]

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """A fact derived from this module alone, computed once (a rule asking it per call
        site of a large file would otherwise rescan the file each time)."""
        found = self._derived.get(key, _MISSING)
        if found is _MISSING:
            found = self._derived[key] = compute()
        return found  # type: ignore[return-value]

    def conditional_ancestors(self, node: cst.CSTNode, stop: cst.CSTNode | None = None) -> list[
        cst.CSTNode
    ]:
        """Branch bodies and loops between ``node`` and ``stop`` (or its scope)."""
        found: list[cst.CSTNode] = []
        for ancestor in self.ancestors(node):
            kind = type(ancestor)
            if ancestor is stop or kind in _DEFINITIONS:
                break
            if kind in _CONDITIONAL_TYPES:
                found.append(ancestor)
        return found

    def dominates(self, earlier: cst.CSTNode, later: cst.CSTNode) -> bool:
        """Approximately: does every path to ``later`` pass through ``earlier``?"""
        later_ancestors = set(map(id, self.ancestors(later)))
        return all(id(a) in later_ancestors for a in self.conditional_ancestors(earlier))

    def method_class(self, function: cst.FunctionDef | None) -> cst.ClassDef | None:
        return self.class_of_method.get(function) if function is not None else None


# Exact node types (libcst's classes are ABCs: ``isinstance`` against them is slow).
_CONDITIONAL_TYPES = frozenset(CONDITIONAL)
_DEFINITIONS = frozenset({cst.FunctionDef, cst.Lambda, cst.ClassDef})
# Nodes that may own a scope a name is looked up in (a class body's names are not visible
# in its methods).
_SCOPE_NODES = frozenset({cst.Module, cst.FunctionDef, cst.Lambda})

_INDEXED = frozenset(
    {cst.Call, cst.For, cst.While, cst.Assign, cst.AnnAssign, cst.AugAssign, cst.NamedExpr, cst.WithItem,
     cst.Import, cst.ImportFrom, cst.FunctionDef, cst.ClassDef, cst.Lambda}
)


# Nodes without structural children.
_LEAVES = frozenset({cst.Name, cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString, cst.Ellipsis})

# Subtrees no analysis looks into: type annotations and f-string internals. Not indexing
# them saves a sizeable share of the indexing time on annotated library code.
_OPAQUE = frozenset({cst.Annotation, cst.FormattedString})


class _Indexer:
    """Builds a :class:`ModuleModel` in one recursive walk."""

    def __init__(self, model: ModuleModel) -> None:
        self.m = model
        self.counter = 0

    def run(self) -> None:
        self._visit(self.m.tree, None, self.m.module_scope, None, None)

    def _visit(
        self,
        node: cst.CSTNode,
        parent: cst.CSTNode | None,
        scope: Scope,
        cls: cst.ClassDef | None,
        function: cst.FunctionDef | None,
    ) -> None:
        m = self.m
        parents, orders = m._parents, m._orders
        key = id(node)
        if parent is not None:
            parents[key] = parent
        orders[key] = self.counter
        self.counter += 1
        # Most nodes (names, operators, literals) index nothing: skip the dispatch for them.
        node_type = type(node)
        if node_type in _INDEXED:
            scope, cls = self._record(node, scope, cls)
            if node_type is cst.Call:
                m.calls_by_function[function].append(node)  # type: ignore[arg-type]
            elif node_type is cst.FunctionDef:
                function = node  # type: ignore[assignment]
        if node_type in _OPAQUE:
            return
        for child in iter_children(node):
            if type(child) in _LEAVES:
                # A third of all nodes: indexed here rather than through a call each.
                child_key = id(child)
                parents[child_key] = node
                orders[child_key] = self.counter
                self.counter += 1
            else:
                self._visit(child, node, scope, cls, function)
        m._ends[key] = self.counter - 1

    def _record(
        self, node: cst.CSTNode, scope: Scope, cls: cst.ClassDef | None
    ) -> tuple[Scope, cst.ClassDef | None]:
        """Index ``node``; return the scope and class its children live in."""
        m = self.m
        if isinstance(node, cst.Call):
            m.calls.append(node)
            name = terminal_name(node.func)
            if name:
                m.calls_by_name[name].append(node)
        elif isinstance(node, (cst.For, cst.While)):
            m.loops.append(node)
            if isinstance(node, cst.For):
                self._bind_target(node.target, node.iter, (), "for", node, scope, cls)
        elif isinstance(node, cst.Assign):
            m.assigns.append(node)
            for target in node.targets:
                self._bind_target(target.target, node.value, (), "assign", node, scope, cls)
        elif isinstance(node, cst.AnnAssign) and node.value is not None:
            self._bind_target(node.target, node.value, (), "assign", node, scope, cls)
        elif isinstance(node, cst.AugAssign):
            m.aug_assigns.append(node)
            self._bind_target(node.target, node.value, (), "aug", node, scope, cls)
        elif isinstance(node, cst.NamedExpr):
            self._bind_target(node.target, node.value, (), "assign", node, scope, cls)
        elif isinstance(node, cst.WithItem) and node.asname is not None:
            self._bind_target(node.asname.name, node.item, (), "with", node, scope, cls)
        elif isinstance(node, (cst.Import, cst.ImportFrom)):
            self._bind_import(node, scope)
        elif isinstance(node, cst.FunctionDef):
            return self._enter_function(node, scope, cls)
        elif isinstance(node, cst.ClassDef):
            self._bind(node.name.value, "class", node, None, (), scope)
            m.classes.setdefault(node.name.value, node)
            class_scope = Scope(node, scope)
            m.scopes[node] = class_scope
            return class_scope, node
        elif isinstance(node, cst.Lambda):
            lambda_scope = Scope(node, scope)
            m.scopes[node] = lambda_scope
            self._bind_params(node.params, lambda_scope)
            return lambda_scope, cls
        return scope, cls

    def _enter_function(
        self, node: cst.FunctionDef, scope: Scope, cls: cst.ClassDef | None
    ) -> tuple[Scope, cst.ClassDef | None]:
        m = self.m
        m.functions.append(node)
        self._bind(node.name.value, "def", node, None, (), scope)
        if isinstance(scope.node, cst.ClassDef):
            m.class_of_method[node] = scope.node
        function_scope = Scope(node, scope)
        m.scopes[node] = function_scope
        self._bind_params(node.params, function_scope)
        # Methods of a class keep ``cls`` so that ``self.x = ...`` is attributed to it.
        return function_scope, scope.node if isinstance(scope.node, cst.ClassDef) else cls

    def _bind_params(self, params: cst.Parameters, scope: Scope) -> None:
        every = [*params.posonly_params, *params.params, *params.kwonly_params]
        for extra in (params.star_arg, params.star_kwarg):
            if isinstance(extra, cst.Param):
                every.append(extra)
        for param in every:
            self._bind(param.name.value, "param", param, param.default, (), scope)

    def _bind_import(self, node: cst.Import | cst.ImportFrom, scope: Scope) -> None:
        if isinstance(node, cst.Import):
            for alias in node.names:
                full = module_dotted(alias.name)
                if alias.asname is not None:
                    local = terminal_name(alias.asname.name) or full
                    qual = full
                else:
                    local = full.split(".")[0]
                    qual = local
                self._bind(local, "import", node, None, (), scope, qual)
            return
        if isinstance(node.names, cst.ImportStar):
            return
        base = "." * relative_prefix(node.relative) + module_dotted(node.module)
        for alias in node.names:
            name = dotted(alias.name) or ""
            bound = terminal_name(alias.asname.name) if alias.asname else name
            joiner = "" if base.endswith(".") or not base else "."
            self._bind(bound or name, "import", node, None, (), scope, f"{base}{joiner}{name}")

    def _bind_target(
        self,
        target: cst.BaseExpression,
        value: cst.BaseExpression,
        path: tuple[int, ...],
        kind: BindingKind,
        stmt: cst.CSTNode,
        scope: Scope,
        cls: cst.ClassDef | None,
    ) -> None:
        if isinstance(target, cst.Name):
            self._bind(target.value, kind, stmt, value, path, scope)
        elif isinstance(target, (cst.Tuple, cst.List)):
            for index, element in enumerate(target.elements):
                inner = element.value
                if isinstance(inner, cst.StarredElement):
                    continue
                self._bind_target(inner, value, (*path, index), kind, stmt, scope, cls)
        elif (
            isinstance(target, cst.Attribute)
            and isinstance(target.value, cst.Name)
            and target.value.value == "self"
            and cls is not None
            and isinstance(scope.node, cst.FunctionDef)
            and kind in ("assign", "with")
        ):
            self.m.self_attrs[cls][target.attr.value].append(
                AttrAssignment(value, path, scope.node)
            )

    def _bind(
        self,
        name: str,
        kind: BindingKind,
        node: cst.CSTNode,
        value: cst.BaseExpression | None,
        path: tuple[int, ...],
        scope: Scope,
        qualname: str | None = None,
    ) -> None:
        order = self.m.order_of(node, self.counter)
        scope.bindings[name].append(Binding(name, kind, node, value, path, order, scope.node, qualname))
