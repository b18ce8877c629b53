"""Syntax errors, judged by libcst's parser and the configured ``target-version``.

libcst parses every Python version it knows with one grammar (the newest), so the
interpreter running trainlint never decides what is valid: Python 3.12 syntax is fine
under Python 3.11. When ``target-version`` is older than the newest version, syntax added
later (``match``, ``except*``, type parameters, nested-quote f-strings, ...) is reported.

CPython's parser is only a fast path: code it accepts (under the target's grammar where
it can emulate it) is valid, and it gives the most precise message for code that both
parsers reject.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from trainlint.analysis.parsing import NestingError, parse
from trainlint.config import DEFAULT_TARGET, TARGET_VERSIONS

SyntaxProblem = tuple[str, int, int]  # (message, line, column), 1-based


def minor(target: str) -> int:
    """``"py311"`` -> 11."""
    return int(target[3:])


def check_text(text: str, target: str = DEFAULT_TARGET) -> SyntaxProblem | None:
    """The syntax error of ``text`` for ``target``, or ``None`` when it is valid."""
    cpython = cpython_error(text, target)
    if cpython is None:
        return None
    try:
        tree = parse(text).tree
    except NestingError as exc:
        return str(exc), exc.line, exc.column
    except cst.ParserSyntaxError as exc:
        return combine(cpython, exc)
    return check_tree(tree, target)


def combine(cpython: SyntaxProblem | None, exc: cst.ParserSyntaxError) -> SyntaxProblem:
    """Both parsers reject the text: CPython pinpoints the mistake better (libcst often
    blames a later line); libcst's message is kept for code CPython accepts."""
    if cpython is not None:
        return cpython
    return f"syntax error (libcst): {exc.message}", exc.raw_line, exc.raw_column + 1


def cpython_error(text: str, target: str = DEFAULT_TARGET) -> SyntaxProblem | None:
    """CPython's verdict under the target's grammar, as far as this interpreter knows it."""
    version = min(minor(target), sys.version_info.minor)
    try:
        ast.parse(text, feature_version=(3, version))
    except SyntaxError as exc:
        return f"syntax error: {exc.msg}", exc.lineno or 1, exc.offset or 1
    except ValueError as exc:  # null bytes
        return f"cannot parse: {exc}", 1, 1
    except (RecursionError, MemoryError):
        # CPython's parser gives up on deep nesting (a 3,000-call method chain); libcst,
        # behind the nesting pre-scan, decides.
        return "the file is nested too deeply for Python's parser", 1, 1
    return None


def check_tree(tree: cst.Module, target: str) -> SyntaxProblem | None:
    """Syntax in ``tree`` that ``target`` does not have yet."""
    if target == TARGET_VERSIONS[-1]:
        return None
    finder = _NewerSyntax(minor(target))
    tree.visit(finder)
    if finder.found is None:
        return None
    node, feature, needed = finder.found
    # Positions only for a file with such syntax, and only then: they cost a parse.
    position = MetadataWrapper(tree, unsafe_skip_copy=True).resolve(PositionProvider)[node].start
    return f"syntax error: {feature} needs Python 3.{needed} (target-version is {target})", position.line, position.column + 1


def _f_string_nests_quote(node: cst.CSTNode) -> bool:
    assert isinstance(node, cst.FormattedString)
    quote = node.quote
    if len(quote) == 3:
        return False  # a triple-quoted f-string may hold single quotes of its kind
    nested = _QuoteFinder(quote)
    for part in node.parts:
        if isinstance(part, cst.FormattedStringExpression):
            part.expression.visit(nested)
    return nested.found


class _QuoteFinder(cst.CSTVisitor):
    def __init__(self, quote: str) -> None:
        super().__init__()
        self.quote = quote
        self.found = False

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        self.found |= self.quote in node.quote

    def visit_FormattedString(self, node: cst.FormattedString) -> None:
        self.found |= self.quote in node.quote


def _always(node: cst.CSTNode) -> bool:
    return True


# node type -> (what it is, the minor version that added it, whether this node uses it)
_FEATURES: dict[type[cst.CSTNode], tuple[str, int, Callable[[cst.CSTNode], bool]]] = {
    cst.NamedExpr: ("an assignment expression (:=)", 8, _always),
    cst.Parameters: ("a positional-only parameter (/)", 8, lambda n: bool(getattr(n, "posonly_params", ()))),
    cst.Match: ("a `match` statement", 10, _always),
    cst.TryStar: ("`except*`", 11, _always),
    cst.FunctionDef: ("a type parameter list", 12, lambda n: getattr(n, "type_parameters", None) is not None),
    cst.ClassDef: ("a type parameter list", 12, lambda n: getattr(n, "type_parameters", None) is not None),
    cst.TypeAlias: ("a `type` statement", 12, _always),
    cst.FormattedString: ("an f-string nesting its own quotes", 12, _f_string_nests_quote),
    cst.TypeParam: ("a type parameter default", 13, lambda n: getattr(n, "default", None) is not None),
}
if hasattr(cst, "TemplatedString"):
    _FEATURES[cst.TemplatedString] = ("a template string (t-string)", 14, _always)


class _NewerSyntax(cst.CSTVisitor):
    """Finds the first node using syntax newer than the target."""

    def __init__(self, target_minor: int) -> None:
        super().__init__()
        self.found: tuple[cst.CSTNode, str, int] | None = None
        self.features = {kind: feature for kind, feature in _FEATURES.items() if feature[1] > target_minor}

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self.found is not None:
            return False
        feature = self.features.get(type(node))
        if feature is not None and feature[2](node):
            self.found = (node, feature[0], feature[1])
            return False
        return True
