"""Parsing Python text into a libcst tree, safely and without avoidable work.

- **Refused before parsing.** libcst's native parser overflows its stack (a segfault: the
  whole process dies) on about 1,300 nested brackets or a 10,000-term ``a + a + ...``, and
  its time grows quadratically with nesting. One cheap pass over the text (strings and
  comments skipped by regular expressions) measures bracket depth, operator chains and
  ``elif`` chains first; deeper input raises :class:`NestingError` instead. The same pass
  records where every statement starts, which :class:`~trainlint.analysis.module.ModuleModel`
  uses to compute positions without regenerating the whole module.
- **No per-node validation.** Every libcst node validates itself when constructed
  (``CSTNode.__post_init__``), so the parser pays for checks its own output passes by
  construction: on real code that is a sixth to a quarter of ``parse_module``. The hook is
  bypassed only while the parser runs; trees built later by the autofixes are validated.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import libcst as cst
from libcst._nodes.base import CSTNode

# CPython's own limit (its tokenizer's MAXLEVEL): deeper brackets are a syntax error anyway.
MAX_BRACKET_DEPTH = 200
# Nesting of one expression, in units of about what each level costs libcst, whose time
# grows quadratically with depth: an operator is 1 (``a + a + ... + a`` with 2,000 terms
# is 2,000 units, parsed in about 2 s), a call or subscript TRAILER_COST (a 500-call
# method chain ``x.f().f()...`` is 2,000). The count errs high (``a * b + c`` is 2 levels,
# counted 3), never low. Adjacent strings do not count: libcst parses thousands of them
# fast and refuses more than ~3,000 itself (a syntax error, not a crash).
MAX_EXPRESSION_DEPTH = 2000
TRAILER_COST = 3
# No character adds more than 2 units (``f(`` adds 4), so shorter logical lines are safe.
_SAFE_LINE_LENGTH = MAX_EXPRESSION_DEPTH // 2
# An ``elif`` nests in the ``if`` before it. CPython gives up ("too complex") around 6,000.
MAX_ELIF_CHAIN = 3000


class NestingError(ValueError):
    """Input nested more deeply than the parser can take; ``line`` and ``column`` are
    1-based, where the limit was first exceeded."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


@dataclass(frozen=True, eq=False)
class ParsedModule:
    """A parsed text; ``statements``: the offset in ``text`` of the first token of each
    statement (simple statement line or compound statement, at any depth), in source order,
    as far as a lexical scan can tell (users check it against the tree)."""

    tree: cst.Module
    text: str
    statements: list[int]


def parse(text: str) -> ParsedModule:
    """Parse ``text``; :class:`NestingError` when it is nested too deeply to parse safely,
    ``libcst.ParserSyntaxError`` when it is not valid Python."""
    statements = _Scanner(text).run()
    with _validation_skipped():
        tree = cst.parse_module(text)
    if text.endswith("\r") and not tree.has_trailing_newline:
        # libcst drops the final line ending when it is a bare CR: keep it, or fixed code
        # would lose it.
        tree = tree.with_changes(has_trailing_newline=True)
    return ParsedModule(tree, text, statements)


def _skip(self: CSTNode) -> None:
    """Stands in for ``CSTNode.__post_init__`` while the parser builds a tree."""


@contextmanager
def _validation_skipped() -> Iterator[None]:
    original = CSTNode.__dict__.get("__post_init__")
    if original is None:  # a libcst without the hook: nothing to skip
        yield
        return
    CSTNode.__post_init__ = _skip  # type: ignore[method-assign]
    try:
        yield
    finally:
        CSTNode.__post_init__ = original  # type: ignore[method-assign]


# -- the lexical pre-scan -------------------------------------------------------------------

# The characters the scan acts on: string quotes (to skip strings), comments, brackets,
# line ends and backslash continuations. A single character class lets the regex engine
# skip everything else (names, numbers, operators, spaces) in C.
_SIGNIFICANT = re.compile(r"[#'\"()\[\]{}\r\n\\]")
# The rest of a string after its opening quote (an unterminated one-line string stops at the
# line end; the parser reports it). String prefixes need no care: in raw strings too, a
# quote after a backslash does not end the string.
_STRING_END = {
    "'": re.compile(r"[^'\\\r\n]*(?:\\[\s\S][^'\\\r\n]*)*'"),
    '"': re.compile(r'[^"\\\r\n]*(?:\\[\s\S][^"\\\r\n]*)*"'),
    "'''": re.compile(r"[^'\\]*(?:(?:\\[\s\S]|'(?!''))[^'\\]*)*'''"),
    '"""': re.compile(r'[^"\\]*(?:(?:\\[\s\S]|"(?!""))[^"\\]*)*"""'),
}
_LINE_END = re.compile(r"[\r\n]|\Z")
# The first token of a line that holds one (not blank, not only a comment), and whether it
# continues a statement (``else:``, a decorator) rather than starts one, or is a keyword
# the scan follows.
_LINE_START = re.compile(
    r"[ \t\f]*(?:(?P<elif>elif\b)|(?P<clause>(?:else|except|finally)\b|@)|(?P<if>if\b)"
    r"|(?P<case>case\b(?![ \t]*[=.:,;)\]}]))|(?=[^ \t\f\r\n#\\]))"
)
# Tokens that nest the tree inside one expression (operators, keyword operators, trailers;
# strings, to skip them), looked for only in logical lines long enough to hold too many.
_EXPRESSION_TOKEN = re.compile(
    r"(?P<quote>'''|\"\"\"|'|\")|#[^\r\n]*|(?P<open>[(\[{])|(?P<close>[)\]}])|(?P<comma>[,;])"
    r"|(?P<op>\*\*|//|<<|>>|[<>=!]=|->|:=|[-+*/%@&|^~<>.]|\b(?:and|or|not|in|is|if|else|lambda|await)\b)"
)
_NEWLINES = re.compile(r"\r\n?|\n")


class _Scanner:
    """One pass over the text: statement starts, and a :class:`NestingError` for input too
    deep to parse. A text the scan cannot follow (an unterminated string, an unmatched
    bracket: a syntax error the parser will report) is never refused for its operators."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.statements: list[int] = []
        self.elifs: dict[str, int] = {}  # indentation -> elifs since the last ``if`` there
        self.case_line = -1  # start of a logical line beginning with ``case`` (soft keyword)

    def run(self) -> list[int]:
        text, depth, logical = self.text, 0, 0
        search = _SIGNIFICANT.search
        self._line_start(0)
        pos = 0
        while (match := search(text, pos)) is not None:
            char = match.group()
            pos = match.end()
            if char == "\n" or char == "\r":
                if char == "\r" and text.startswith("\n", pos):
                    pos += 1
                if depth == 0:
                    if match.start() - logical > _SAFE_LINE_LENGTH or self.case_line >= logical:
                        self._logical_line(logical, match.start())
                    logical = pos
                    self._line_start(pos)
            elif char in "([{":
                depth += 1
                if depth > MAX_BRACKET_DEPTH:
                    self._refuse_brackets(match.start())
            elif char in ")]}":
                depth -= 1
                if depth < 0:
                    return self.statements  # unmatched bracket: a syntax error
            elif char == "#":
                pos = _LINE_END.search(text, pos).start()  # type: ignore[union-attr]  # \Z always matches
            elif char == "\\":
                pos += 2 if text.startswith("\r\n", pos) else 1 if text.startswith(("\n", "\r"), pos) else 0
            else:
                string = _string_at(text, match.start(), len(text))
                if string is None:
                    return self.statements  # unterminated string: a syntax error
                if string.formatted and depth + _deepest_bracket(text, string.start, string.end) > MAX_BRACKET_DEPTH:
                    self._refuse_brackets(string.start)
                pos = string.end
        if depth == 0:
            self._logical_line(logical, len(text))
        return self.statements

    def _line_start(self, pos: int) -> None:
        """At the start of a logical line: record the statement it starts, if any."""
        first = _LINE_START.match(self.text, pos)
        if first is None:
            return
        kind = first.lastgroup
        start = first.start(kind) if kind else first.end()
        if kind == "elif":
            indentation = self.text[pos:start]
            count = self.elifs.get(indentation, 0) + 1
            self.elifs[indentation] = count
            if count > MAX_ELIF_CHAIN:
                self._refuse(f"`if` statement with too many `elif` branches to analyse (more than {MAX_ELIF_CHAIN})", start)
            return
        if kind == "clause":
            return
        if kind == "if":
            self.elifs[self.text[pos:start]] = 0
        elif kind == "case":
            self.case_line = start
        self.statements.append(start)

    def _logical_line(self, start: int, end: int) -> None:
        if self.case_line >= start and self._ends_with_colon(start, end):
            self.statements.pop()  # a ``case`` clause of a ``match``, not a statement
        if end - start > _SAFE_LINE_LENGTH:
            self._check_expressions(start, end, 0)

    def _ends_with_colon(self, start: int, end: int) -> bool:
        line = self.text[start:end]
        comment = line.rfind("#")
        return line.rstrip().endswith(":") or (comment >= 0 and line[:comment].rstrip().endswith(":"))

    def _check_expressions(self, start: int, end: int, total: int) -> None:
        """Refuse if an expression in ``text[start:end]`` (a logical line, or a replacement
        field of an f-string at nesting ``total``) nests more than MAX_EXPRESSION_DEPTH
        units: each open bracket, and each operator or trailer since the last comma at
        each open bracket."""
        text = self.text
        segments = [0]  # operators since the last comma, per open bracket
        pos = start
        while (match := _EXPRESSION_TOKEN.search(text, pos, end)) is not None:
            pos = match.end()
            kind = match.lastgroup
            if kind == "quote":
                string = _string_at(text, match.start(), end)
                if string is None:
                    return
                pos = string.end
                for field_start, field_end in string.fields(text) if string.formatted else ():
                    self._check_expressions(field_start, field_end, total)
            elif kind == "open":
                before = text[match.start() - 1] if match.start() else ""
                trailer = TRAILER_COST if before.isalnum() or before in ")]_'\"" else 0  # a call or subscript
                segments[-1] += trailer
                segments.append(0)
                total += 1 + trailer
            elif kind == "close":
                if len(segments) == 1:
                    return
                total -= segments.pop() + 1
            elif kind == "comma":
                total -= segments[-1]
                segments[-1] = 0
            elif kind == "op":
                segments[-1] += 1
                total += 1
            if total > MAX_EXPRESSION_DEPTH:
                self._refuse(
                    f"expression nested too deeply to analyse (more than {MAX_EXPRESSION_DEPTH} levels of "
                    "operators, calls, subscripts and brackets)",
                    match.start(),
                )

    def _refuse_brackets(self, offset: int) -> None:
        self._refuse(f"too many nested parentheses (more than {MAX_BRACKET_DEPTH} levels)", offset)

    def _refuse(self, message: str, offset: int) -> None:
        line = len(_NEWLINES.findall(self.text, 0, offset)) + 1
        line_start = max(self.text.rfind("\n", 0, offset), self.text.rfind("\r", 0, offset)) + 1
        raise NestingError(message, line, offset - line_start + 1)


@dataclass(frozen=True)
class _String:
    start: int  # the opening quote
    end: int  # after the closing quote
    quote: str
    formatted: bool  # an f-string (or a t-string): its replacement fields are code

    def fields(self, text: str) -> Iterator[tuple[int, int]]:
        """Spans of the top-level replacement fields (``{...}``, not ``{{``)."""
        depth, field_start = 0, 0
        for match in _BRACES.finditer(text, self.start + len(self.quote), self.end - len(self.quote)):
            brace = match.group()
            if depth == 0 and brace in ("{{", "}}"):
                continue
            if brace[0] == "{":
                depth += len(brace)
                if depth == len(brace):
                    field_start = match.start() + 1
            else:
                depth = max(depth - len(brace), 0)
                if depth == 0:
                    yield field_start, match.start()


_BRACES = re.compile(r"\{\{|\}\}|[{}]")
_BRACKETS = re.compile(r"[(\[{]|[)\]}]")


def _string_at(text: str, start: int, end: int) -> _String | None:
    """The string literal whose opening quote is at ``start``; ``None`` if unterminated."""
    char = text[start]
    quote = char * 3 if text.startswith(char * 2, start + 1) else char
    closing = _STRING_END[quote].match(text, start + len(quote), end)
    if closing is None:
        return None
    prefix = start
    while prefix > max(start - 2, 0) and text[prefix - 1] in "rRbBuUfFtT":
        prefix -= 1
    if prefix and (text[prefix - 1].isalnum() or text[prefix - 1] == "_"):
        prefix = start  # the end of a name (``if"x"``), not a prefix
    letters = text[prefix:start].lower()
    return _String(start, closing.end(), quote, "f" in letters or "t" in letters)


def _deepest_bracket(text: str, start: int, end: int) -> int:
    """How deep brackets nest in ``text[start:end]`` (an f-string, whose fields nest)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(text, start, end):
        depth += 1 if match.group() in "([{" else -1
        deepest = max(deepest, depth)
    return deepest
