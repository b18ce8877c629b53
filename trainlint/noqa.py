"""``# noqa`` comments: which findings they silence, and rewriting them.

Only real comments count (found with :mod:`tokenize`), so ``"# noqa"`` inside a string
neither silences a finding nor gets rewritten by a fix. Directives name codes
(``# noqa: TL101, E501``), prefixes (``TL1``) or rule names; a bare ``# noqa`` silences
every finding on its line. ``# trainlint: noqa`` on a line of its own skips the file, and
``# trainlint: noqa: TL201`` silences those codes in the whole file.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from trainlint.diagnostics import Diagnostic
from trainlint.sources import LINE_BREAK, read_regular, split_lines, write_atomically

# Codes are separated by commas, or by spaces before something shaped like a code (so that
# the words of an explanation after the codes, "legacy loop", are not read as codes).
_DIRECTIVE = re.compile(
    r"#\s*noqa(?::\s*(?P<codes>[\w\-]+(?:(?:\s*,\s*|\s+(?=[A-Za-z]+\d+\b))[\w\-]+)*))?", re.IGNORECASE
)
_FILE_DIRECTIVE = re.compile(
    r"#\s*trainlint:\s*noqa(?::\s*(?P<codes>[A-Za-z0-9_\-]+(?:\s*,\s*[A-Za-z0-9_\-]+)*))?\s*$", re.IGNORECASE
)
_CODE = re.compile(r"[A-Za-z0-9_\-]+")
# What looks like a trainlint code; anything else in a directive belongs to another tool.
TRAINLINT_CODE = re.compile(r"^TL\d\w*$", re.IGNORECASE)


@dataclass(frozen=True)
class Directive:
    """A ``# noqa`` comment on ``line`` (1-based); ``codes`` empty for a bare ``# noqa``.
    ``start``/``end`` delimit the directive in the line's text."""

    line: int
    start: int
    end: int
    codes: tuple[str, ...]


@dataclass(frozen=True)
class FileExemption:
    whole_file: bool = False
    codes: tuple[str, ...] = ()


def comments(text: str) -> dict[int, tuple[int, str]]:
    """``{line: (column, comment)}`` for every comment of ``text``; empty when the text
    cannot be tokenized (the caller then treats the file as having no directive)."""
    found: dict[int, tuple[int, str]] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(text, newline=None).readline):
            if token.type == tokenize.COMMENT:
                found[token.start[0]] = (token.start[1], token.string)
    except (tokenize.TokenError, SyntaxError, ValueError):
        return found
    return found


def directives(text: str) -> dict[int, Directive]:
    """The ``# noqa`` directives of ``text`` by line."""
    if "noqa" not in text.lower():
        return {}
    found: dict[int, Directive] = {}
    for line, (column, comment) in comments(text).items():
        match = _DIRECTIVE.search(comment)
        if match is not None:
            codes = tuple(_CODE.findall(match.group("codes") or ""))
            found[line] = Directive(line, column + match.start(), column + match.end(), codes)
    return found


def file_exemption(text: str) -> FileExemption:
    if "trainlint" not in text or "noqa" not in text.lower():
        return FileExemption()
    codes: list[str] = []
    for column, comment in comments(text).values():
        match = _FILE_DIRECTIVE.match(comment)
        if match is None:
            continue
        if not match.group("codes"):
            return FileExemption(whole_file=True)
        codes += _CODE.findall(match.group("codes"))
    return FileExemption(codes=tuple(codes))


def without_codes(line_text: str, directive: Directive, unused: set[str]) -> str:
    """``line_text`` with ``unused`` codes removed from its directive; the whole comment
    goes when no code is left."""
    kept = [code for code in directive.codes if code not in unused]
    if kept:
        return f"{line_text[: directive.start]}# noqa: {', '.join(kept)}{line_text[directive.end :]}"
    rest = line_text[directive.end :]
    head = line_text[: directive.start].rstrip()
    # A directive followed by another comment (a reason, after a second ``#``) keeps it.
    rest = rest.strip()
    if rest.startswith("#"):
        return f"{head}  {rest}" if head else rest
    return head


def with_codes(line_text: str, directive: Directive | None, codes: Sequence[str]) -> str:
    """``line_text`` with ``codes`` added to its directive, or with a new directive."""
    if directive is None:
        return f"{line_text.rstrip()}  # noqa: {', '.join(codes)}"
    missing = [code for code in codes if code not in directive.codes]
    if not directive.codes or not missing:
        return line_text  # a bare ``# noqa`` already silences everything
    merged = ", ".join((*directive.codes, *missing))
    return f"{line_text[: directive.start]}# noqa: {merged}{line_text[directive.end :]}"


def replace_lines(text: str, replacements: dict[int, str]) -> str:
    """``text`` with whole lines replaced (1-based), keeping each line's ending."""
    parts = LINE_BREAK.split(text)
    breaks = LINE_BREAK.findall(text)
    for line, new in replacements.items():
        if 0 < line <= len(parts):
            parts[line - 1] = new
    pieces = [part + (breaks[index] if index < len(breaks) else "") for index, part in enumerate(parts)]
    return "".join(pieces)


def unsafe_lines(text: str) -> set[int]:
    """Lines where a comment cannot be appended: they end inside a multi-line string or
    with a backslash continuation (a ``# noqa`` there would change the code)."""
    blocked: set[int] = set()
    fstring_start, fstring_end = getattr(tokenize, "FSTRING_START", -1), getattr(tokenize, "FSTRING_END", -1)
    opened: list[int] = []  # lines of the f-strings open (Python 3.12+ tokenizes their parts)
    try:
        for token in tokenize.generate_tokens(io.StringIO(text, newline=None).readline):
            if token.type == fstring_start:
                opened.append(token.start[0])
            elif token.type == fstring_end and opened:
                blocked.update(range(opened.pop(), token.end[0]))
            elif token.type == tokenize.STRING and token.end[0] > token.start[0]:
                blocked.update(range(token.start[0], token.end[0]))
    except (tokenize.TokenError, SyntaxError, ValueError):
        return set(range(1, text.count("\n") + 2))
    for number, line in enumerate(LINE_BREAK.split(text), start=1):
        if line.rstrip().endswith("\\"):
            blocked.add(number)
    return blocked


def add_noqa(diagnostics: Iterable[Diagnostic]) -> tuple[int, list[str]]:
    """``--add-noqa``: add the codes of each finding to a ``# noqa`` on its line, in place
    (encoding and line endings kept). Notebooks and parse errors are skipped, and so are
    lines where a comment would change the code. Returns (directives added or extended,
    ``path:line`` of the lines skipped)."""
    by_file: dict[str, dict[int, list[str]]] = {}
    for d in diagnostics:
        if d.cell is None and d.code != "TL000" and not d.path.endswith(".ipynb"):
            codes = by_file.setdefault(d.path, {}).setdefault(d.line, [])
            if d.code not in codes:
                codes.append(d.code)
    added, skipped = 0, []
    for path, lines in sorted(by_file.items()):
        count, blocked = _add_to_file(Path(path), lines)
        added += count
        skipped += [f"{path}:{line}" for line in blocked]
    return added, skipped


def _add_to_file(path: Path, wanted: dict[int, list[str]]) -> tuple[int, list[int]]:
    data = read_regular(path)
    encoding = tokenize.detect_encoding(io.BytesIO(data).readline)[0]
    text = data.decode(encoding)
    bom = text.startswith("\ufeff")
    text = text.removeprefix("\ufeff")
    lines, found, unsafe = split_lines(text), directives(text), unsafe_lines(text)
    replacements: dict[int, str] = {}
    blocked = []
    for line, codes in sorted(wanted.items()):
        if line in unsafe or not 0 < line <= len(lines):
            blocked.append(line)
            continue
        new = with_codes(lines[line - 1], found.get(line), codes)
        if new != lines[line - 1]:
            replacements[line] = new
    if replacements:
        fixed = ("\ufeff" if bom else "") + replace_lines(text, replacements)
        write_atomically(path, fixed.encode(encoding))
    return len(replacements), blocked
