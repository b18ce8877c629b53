"""Source positions of nodes, exactly as libcst's ``PositionProvider`` gives them, without
regenerating the whole module.

``PositionProvider`` renders the code of the entire module to count lines and columns: on
training code, where most files have a finding, that was about as costly as the parse. Here
only the statement around a node is rendered (the innermost simple statement line or
compound statement), with the indentation of the blocks it sits in, so its code is exactly
the text it was parsed from; the line it starts on comes from the statement starts the
parser's pre-scan recorded. Each result is checked against the text (same code at that
place, same column); where anything disagrees, the whole module is rendered as before.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping
from typing import cast

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider
from libcst.metadata.position_provider import PositionProvidingCodegenState

from trainlint.analysis.parsing import ParsedModule
from trainlint.analysis.walk import iter_children

_NEWLINE = re.compile(r"\r\n?|\n")  # what PositionProvider counts as a line end
# Nodes whose children may include statements.
_HOLDERS = (
    cst.BaseCompoundStatement, cst.IndentedBlock, cst.Else, cst.ExceptHandler, cst.ExceptStarHandler, cst.Finally,
    cst.MatchCase,
)

Computed = Mapping[cst.CSTNode, CodeRange]


class Positions:
    """Positions of the nodes of one parsed module; ``parents``: the module index's map
    from ``id(node)`` to parent (a map, not the index: no reference cycle)."""

    def __init__(self, parsed: ParsedModule, parents: dict[int, cst.CSTNode]) -> None:
        self._parsed = parsed
        self._parents = parents
        self._statements: dict[int, int] | None = None  # id(statement) -> its index in source order
        self._line_starts: list[int] = []
        self._rendered: dict[int, tuple[Computed, int]] = {}  # id(statement) -> (positions, line offset)
        self._whole: Computed | None = None

    def span_of(self, node: cst.CSTNode) -> CodeRange | None:
        if self._whole is None:
            rendered = self._rendered_around(node)
            if rendered is not None:
                computed, offset = rendered
                where = computed.get(node)
                if where is None or not offset:
                    return where
                return CodeRange((where.start.line + offset, where.start.column), (where.end.line + offset, where.end.column))
            self._whole = MetadataWrapper(self._parsed.tree, unsafe_skip_copy=True).resolve(PositionProvider)
        return self._whole.get(node)

    def _rendered_around(self, node: cst.CSTNode) -> tuple[Computed, int] | None:
        """Positions (and the line offset to add) of a statement around ``node``: one already
        rendered, else the innermost; ``None`` when there is none or it fails its check."""
        statements = self._statement_index()
        innermost: cst.CSTNode | None = None
        current: cst.CSTNode | None = node
        while current is not None:
            rendered = self._rendered.get(id(current))
            if rendered is not None:
                return rendered
            if innermost is None and id(current) in statements:
                innermost = current
            current = self._parents.get(id(current))
        if innermost is None:
            return None
        rendered = self._render(innermost, statements[id(innermost)])
        if rendered is not None:
            self._rendered[id(innermost)] = rendered
        return rendered

    def _render(self, statement: cst.CSTNode, index: int) -> tuple[Computed, int] | None:
        tree, text = self._parsed.tree, self._parsed.text
        provider = PositionProvider()
        state = PositionProvidingCodegenState(tree.default_indent, tree.default_newline, provider)
        state.indent_tokens = self._indentation(statement)
        statement._codegen(state)
        code = "".join(state.tokens)
        computed = cast(Computed, provider._computed)
        start = computed[statement].start
        # Where the pre-scan saw the statement's first token: its line, and the line the
        # statement's code (comments and decorators before it included) starts on.
        offset = self._parsed.statements[index]
        lines = self._lines()
        line = bisect_right(lines, offset)
        first = line - start.line + 1
        if offset - lines[line - 1] != start.column or first < 1 or not _placed(code, text, lines[first - 1]):
            return None
        return computed, first - 1

    def _indentation(self, statement: cst.CSTNode) -> list[str]:
        """The indentation of the blocks ``statement`` sits in, outermost first."""
        default = self._parsed.tree.default_indent
        indents: list[str] = []
        current = self._parents.get(id(statement))
        while current is not None:
            if isinstance(current, cst.IndentedBlock):
                indents.append(default if current.indent is None else current.indent)
            current = self._parents.get(id(current))
        return indents[::-1]

    def _statement_index(self) -> dict[int, int]:
        """Every statement in source order, as the pre-scan numbered them; empty when the
        counts disagree (then every position comes from rendering the whole module)."""
        if self._statements is None:
            found: list[cst.CSTNode] = []
            pending: list[tuple[cst.CSTNode, bool]] = [(self._parsed.tree, False)]
            while pending:
                node, is_statement = pending.pop()
                if is_statement:
                    found.append(node)
                block = isinstance(node, (cst.Module, cst.IndentedBlock))
                children = [(child, block) for child in iter_children(node) if block or isinstance(child, _HOLDERS)]
                pending.extend(reversed(children))
            usable = len(found) == len(self._parsed.statements)
            self._statements = {id(node): index for index, node in enumerate(found)} if usable else {}
        return self._statements

    def _lines(self) -> list[int]:
        """Offset of the start of every line of the text."""
        if not self._line_starts:
            self._line_starts = [0, *(match.end() for match in _NEWLINE.finditer(self._parsed.text))]
        return self._line_starts


def _placed(code: str, text: str, begin: int) -> bool:
    """``code`` is the text at ``begin`` (the module may lack its final line ending)."""
    if text.startswith(code, begin):
        return True
    rest = text[begin:]
    return code.startswith(rest) and not code[len(rest):].strip("\r\n")
