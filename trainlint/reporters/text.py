"""``--format text``: ruff-style full output.

Each finding starts with its code, ``[*]`` when ``--fix`` would fix it, and its message;
the location follows on a line of its own, then the source line (or the notebook cell's
line) with a caret and the hint. Messages and hints wrap at the terminal's width, between
words; source lines never wrap, so that the caret stays under the code.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from typing import TYPE_CHECKING, TextIO

from trainlint.diagnostics import Diagnostic, Severity
from trainlint.reporters import ReportOptions
from trainlint.reporters._source import SourceLines

if TYPE_CHECKING:
    from rich.console import Console

    from trainlint.linter import LintResult

NAME = "text"

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "bold yellow", Severity.INFO: "bold cyan"}


def render(result: LintResult, stream: TextIO, options: ReportOptions = ReportOptions()) -> None:
    from rich.console import Console

    # soft_wrap: rich never breaks lines itself (wrapping is done here, between words);
    # rich honours NO_COLOR and FORCE_COLOR.
    console = Console(file=stream, highlight=False, soft_wrap=True)
    lines = SourceLines(options.sources)
    for diagnostic in result.diagnostics:
        _render_one(console, diagnostic, lines, options)
    for error in result.errors:
        console.print(_wrap(f"error: {error.path}: {error.message}", options.width, "  "), style="bold red", markup=False)
    console.print(summary(result))
    fixes = fix_summary(result, options)
    if fixes:
        console.print(_wrap(fixes, options.width, ""), markup=False)


def location(diagnostic: Diagnostic) -> str:
    if diagnostic.cell is not None:
        return f"{diagnostic.path}:cell {diagnostic.cell}:line {diagnostic.line}:col {diagnostic.column}"
    return f"{diagnostic.path}:{diagnostic.line}:{diagnostic.column}"


def _render_one(console: Console, d: Diagnostic, lines: SourceLines, options: ReportOptions) -> None:
    from rich.markup import escape

    style = _STYLE[d.severity]
    head = f"{d.code}{' [*]' if options.applicable(d) else ''} "
    message = _wrap(f"{d.message} ({d.name})", _less(options.width, len(head)), " " * len(head))
    console.print(f"[{style}]{escape(head)}[/]{escape(message)}")
    source_line = lines.line(d).rstrip()
    gutter = " " * len(str(d.line))
    console.print(f"[blue]{gutter}-->[/] {escape(location(d))}")
    if source_line:
        width = (d.span.end_column if d.span.end_line == d.line else len(source_line) + 1) - d.column
        console.print(f"[blue]{gutter} |[/]")
        console.print(f"[blue]{d.line} |[/] {escape(source_line)}")
        console.print(f"[blue]{gutter} |[/] {' ' * (d.column - 1)}[{style}]{'^' * max(width, 1)}[/]")
    if d.hint:
        prefix = f"{gutter} = hint: "
        hint = _wrap(d.hint, _less(options.width, len(prefix)), " " * len(prefix))
        console.print(f"[blue]{gutter} =[/] [bold]hint[/]: {escape(hint)}")
    console.print()


def _less(width: int | None, used: int) -> int | None:
    return None if width is None else max(width - used, 20)


def _wrap(text: str, width: int | None, indent: str) -> str:
    """``text`` wrapped between words to ``width`` columns, continuation lines indented."""
    if width is None or len(text) <= width:
        return text
    wrapped = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
    return f"\n{indent}".join(wrapped)


def summary(result: LintResult) -> str:
    if not result.diagnostics and not result.errors:
        return f"[bold green]All checks passed![/] ({result.files} file{'s' * (result.files != 1)} checked)"
    counts = Counter(d.severity for d in result.diagnostics)
    parts = [f"{counts[s]} {s.value}{'s' * (counts[s] != 1)}" for s in Severity if counts[s]]
    if result.errors:
        parts.append(f"{len(result.errors)} file error{'s' * (len(result.errors) != 1)}")
    total = len(result.diagnostics)
    return f"Found {total} finding{'s' * (total != 1)} ({', '.join(parts)}) in {result.files} file{'s' * (result.files != 1)}."


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
