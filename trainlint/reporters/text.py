"""``--format text``: ruff-style full output.

Each finding starts with its code, ``[*]`` when ``--fix`` would fix it, and its message;
the location follows on a line of its own, then the source line (or the notebook cell's
line) with a caret and the hint. Messages and hints wrap at the terminal's width, between
words; source lines never wrap, so that the caret stays under the code.
"""

from __future__ import annotations

import os
import textwrap
from collections import Counter
from typing import TYPE_CHECKING, TextIO

from trainlint.diagnostics import Diagnostic, Severity
from trainlint.reporters import ReportOptions
from trainlint.reporters._source import SourceLines

if TYPE_CHECKING:
    from trainlint.linter import LintResult

NAME = "text"

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "bold yellow", Severity.INFO: "bold cyan"}
Line = list[tuple[str, str]]  # (text, rich style) pieces of one output line


def render(result: LintResult, stream: TextIO, options: ReportOptions = ReportOptions()) -> None:
    lines: list[Line] = []
    source = SourceLines(options.sources)
    for diagnostic in result.diagnostics:
        lines += _finding(diagnostic, source, options)
    for error in result.errors:
        lines.append([(_wrap(f"error: {error.path}: {error.message}", options.width, "  "), "bold red")])
    lines.append(summary_line(result))
    fixes = fix_summary(result, options)
    if fixes:
        lines.append([(_wrap(fixes, options.width, ""), "")])
    _write(lines, stream)


def _write(lines: list[Line], stream: TextIO) -> None:
    """Plain text, unless colours are wanted: then rich (imported only then) styles it and
    applies its own rules (NO_COLOR, FORCE_COLOR, TERM)."""
    if not _colour(stream):
        stream.write("".join("".join(text for text, _ in line) + "\n" for line in lines))
        return
    from rich.console import Console
    from rich.text import Text

    # soft_wrap: rich never breaks lines itself; wrapping is done here, between words.
    console = Console(file=stream, highlight=False, soft_wrap=True)
    for line in lines:
        console.print(Text.assemble(*line))


def _colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(os.environ.get("FORCE_COLOR")) or (isatty is not None and isatty())


def location(diagnostic: Diagnostic) -> str:
    if diagnostic.cell is not None:
        return f"{diagnostic.path}:cell {diagnostic.cell}:line {diagnostic.line}:col {diagnostic.column}"
    return f"{diagnostic.path}:{diagnostic.line}:{diagnostic.column}"


def _finding(d: Diagnostic, source: SourceLines, options: ReportOptions) -> list[Line]:
    style = _STYLE[d.severity]
    head = f"{d.code}{' [*]' if options.applicable(d) else ''} "
    message = _wrap(f"{d.message} ({d.name})", _less(options.width, len(head)), " " * len(head))
    gutter = " " * len(str(d.line))
    lines: list[Line] = [[(head, style), (message, "")], [(f"{gutter}-->", "blue"), (f" {location(d)}", "")]]
    source_line = source.line(d).rstrip()
    if source_line:
        width = (d.span.end_column if d.span.end_line == d.line else len(source_line) + 1) - d.column
        lines += [
            [(f"{gutter} |", "blue")],
            [(f"{d.line} |", "blue"), (f" {source_line}", "")],
            [(f"{gutter} |", "blue"), (" " * d.column, ""), ("^" * max(width, 1), style)],
        ]
    if d.hint:
        prefix = f"{gutter} = hint: "
        hint = _wrap(d.hint, _less(options.width, len(prefix)), " " * len(prefix))
        lines.append([(f"{gutter} =", "blue"), (" ", ""), ("hint", "bold"), (f": {hint}", "")])
    lines.append([])
    return lines


def _less(width: int | None, used: int) -> int | None:
    return None if width is None else max(width - used, 20)


def _wrap(text: str, width: int | None, indent: str) -> str:
    """``text`` wrapped between words to ``width`` columns, continuation lines indented."""
    if width is None or len(text) <= width:
        return text
    wrapped = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
    return f"\n{indent}".join(wrapped)


def summary_line(result: LintResult) -> Line:
    files = f"{result.files} file{'s' * (result.files != 1)}"
    if not result.diagnostics and not result.errors:
        return [("All checks passed!", "bold green"), (f" ({files} checked)", "")]
    counts = Counter(d.severity for d in result.diagnostics)
    parts = [f"{counts[s]} {s.value}{'s' * (counts[s] != 1)}" for s in Severity if counts[s]]
    if result.errors:
        parts.append(f"{len(result.errors)} file error{'s' * (len(result.errors) != 1)}")
    total = len(result.diagnostics)
    return [(f"Found {total} finding{'s' * (total != 1)} ({', '.join(parts)}) in {files}.", "")]


def fix_summary(result: LintResult, options: ReportOptions) -> str:
    """Like ruff: ``[*] 2 fixable with the `--fix` option (1 hidden fix can be enabled with
    the `--unsafe-fixes` option).``"""
    fixable = sum(options.applicable(d) for d in result.diagnostics)
    hidden = sum(d.fix is not None and not options.applicable(d) for d in result.diagnostics)
    if not fixable and not hidden:
        return ""
    hint = f"{hidden} hidden fix{'es' * (hidden != 1)} can be enabled with the `--unsafe-fixes` option"
    if not fixable:
        return f"No fixes available ({hint})."
    text = f"[*] {fixable} fixable with the `--fix` option"
    return f"{text} ({hint})." if hidden else f"{text}."
