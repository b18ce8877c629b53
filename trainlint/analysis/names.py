"""Dotted names and the import table that turns local aliases into qualified names."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst


def dotted(expr: cst.BaseExpression) -> str | None:
    """``torch.nn.functional`` for a Name/Attribute chain, else ``None``."""
    # Exact types: libcst's classes are ABCs, against which ``isinstance`` is slow.
    if type(expr) is cst.Name:
        return expr.value  # type: ignore[attr-defined,no-any-return]
    parts: list[str] = []
    while type(expr) is cst.Attribute:
        parts.append(expr.attr.value)  # type: ignore[attr-defined]
        expr = expr.value  # type: ignore[attr-defined]
    if type(expr) is not cst.Name:
        return None
    parts.append(expr.value)  # type: ignore[attr-defined]
    return ".".join(reversed(parts))


def root_name(expr: cst.BaseExpression) -> str | None:
    """The leftmost name of an attribute/call/subscript chain (``self`` for ``self.a.b()``)."""
    while True:
        if isinstance(expr, cst.Name):
            return expr.value
        if isinstance(expr, cst.Attribute):
            expr = expr.value
        elif isinstance(expr, cst.Call):
            expr = expr.func
        elif isinstance(expr, cst.Subscript):
            expr = expr.value
        else:
            return None


def terminal_name(expr: cst.BaseExpression) -> str | None:
    """The rightmost identifier: ``optimizer`` for ``self.optimizer``, ``step`` for ``opt.step``."""
    kind = type(expr)
    if kind is cst.Name:
        return expr.value  # type: ignore[attr-defined,no-any-return]
    if kind is cst.Attribute:
        return expr.attr.value  # type: ignore[attr-defined,no-any-return]
    if kind is cst.Subscript:
        return terminal_name(expr.value)  # type: ignore[attr-defined]
    return None


def module_dotted(node: cst.Attribute | cst.Name | None) -> str:
    """Text of an ``import``/``from`` module reference (``None`` for ``from . import x``)."""
    if node is None:
        return ""
    return dotted(node) or ""


def relative_prefix(dots: object) -> int:
    """How many leading dots a ``from ... import`` has."""
    return len(dots) if isinstance(dots, (list, tuple)) else 0


def target_names(target: cst.BaseExpression) -> Iterator[cst.Name]:
    """The names an assignment target binds: ``a`` and ``b`` of ``a, (b, self.c)``."""
    if isinstance(target, cst.Name):
        yield target
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from target_names(element.value)


def name_uses(scope: cst.CSTNode, name: str) -> int:
    """How many times ``name`` appears as an identifier inside ``scope`` (binding or use)."""
    counter = _NameCounter(name)
    scope.visit(counter)
    return counter.count


class _NameCounter(cst.CSTVisitor):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.count = 0

    def visit_Name(self, node: cst.Name) -> None:
        if node.value == self.name:
            self.count += 1
