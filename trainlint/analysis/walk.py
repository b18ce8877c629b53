"""Fast traversal of a libcst tree.

libcst's visitor protocol rebuilds every node's children (including whitespace and
punctuation tokens) and costs nearly as much as parsing. The linter only needs the
syntactic skeleton, so we walk dataclass fields directly, skipping token-only fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import libcst as cst

# Field names that only ever hold whitespace, comments or punctuation tokens.
_TOKEN_FIELD_PREFIXES = (
    "whitespace",
    "lpar",
    "rpar",
    "lbracket",
    "rbracket",
    "lbrace",
    "rbrace",
    "comma",
    "semicolon",
    "colon",
    "equal",
    "dot",
    "star",
    "leading_lines",
    "lines_after_decorators",
    "header",
    "footer",
    "trailing_whitespace",
    "first_line",
    "empty_lines",
    "operator",
    "asynchronous",
    "arrow",
    "walrus",
)

_FIELDS_CACHE: dict[type, tuple[str, ...]] = {}


def _child_fields(node_type: type) -> tuple[str, ...]:
    fields = _FIELDS_CACHE.get(node_type)
    if fields is None:
        fields = tuple(
            f.name
            for f in dataclasses.fields(node_type)
            if not f.name.startswith(_TOKEN_FIELD_PREFIXES)
        )
        _FIELDS_CACHE[node_type] = fields
    return fields


def _concrete_node_types() -> frozenset[type]:
    found: set[type] = set()
    pending: list[type] = [cst.CSTNode]
    while pending:
        current = pending.pop()
        found.add(current)
        pending.extend(current.__subclasses__())
    return frozenset(found)


# Every node class, for exact-type membership tests: CSTNode is an ABC, and isinstance
# against an ABC, done per field value, was the largest cost of walking a tree.
_NODE_TYPES = _concrete_node_types()


def iter_children(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Yield the structural children of ``node`` in source order."""
    for name in _child_fields(type(node)):
        value = getattr(node, name)
        value_type = type(value)
        if value_type is list or value_type is tuple:
            for item in value:
                if type(item) in _NODE_TYPES:
                    yield item
        elif value_type in _NODE_TYPES:
            yield value


# Bodies that run only when called: the calls inside them are not made where they stand.
_DEFERRED = (cst.Lambda, cst.FunctionDef)


def calls_innermost_first(node: cst.CSTNode) -> list[cst.Call]:
    """The calls in ``node`` (itself included) in evaluation order: arguments before the
    call they are passed to. Lambdas and nested functions are not entered.

    Iterative, because flows visit every expression of every training loop.
    """
    found: list[cst.Call] = []
    stack: list[tuple[cst.CSTNode, bool]] = [(node, False)]
    while stack:
        current, children_done = stack.pop()
        if children_done:
            found.append(current)  # type: ignore[arg-type]  # only calls are pushed so
            continue
        if type(current) is cst.Call:
            stack.append((current, True))
        children = [child for child in iter_children(current) if type(child) not in _DEFERRED]
        stack.extend((child, False) for child in reversed(children))
    return found
