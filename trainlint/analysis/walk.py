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


def iter_children(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Yield the structural children of ``node`` in source order."""
    for name in _child_fields(type(node)):
        value = getattr(node, name)
        if isinstance(value, cst.CSTNode):
            yield value
        elif isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, cst.CSTNode):
                    yield item

