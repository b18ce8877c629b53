"""``--format text``: ruff-style full output with the source line, a caret and the hint."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.markup import escape

from trainlint.diagnostics import Diagnostic, Severity

if TYPE_CHECKING:
    from trainlint.linter import LintResult

NAME = "text"

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "bold yellow", Severity.INFO: "bold cyan"}


def render(result: LintResult, stream: TextIO) -> None:
    console = Console(file=stream, highlight=False, soft_wrap=True)
    lines_cache: dict[str, list[str]] = {}
    for diagnostic in result.diagnostics:
        _render_one(console, diagnostic, lines_cache)
    for error in result.errors:
        console.print(f"[bold red]error[/]: {escape(error.path)}: {escape(error.message)}")
    console.print(summary(result))


def location(diagnostic: Diagnostic) -> str:
    if diagnostic.cell is not None:
        return f"{diagnostic.path}:cell {diagnostic.cell}:line {diagnostic.line}:col {diagnostic.column}"
    return f"{diagnostic.path}:{diagnostic.line}:{diagnostic.column}"


def _render_one(console: Console, d: Diagnostic, lines_cache: dict[str, list[str]]) -> None:
    style = _STYLE[d.severity]
    console.print(
        f"[bold]{escape(location(d))}[/]: [{style}]{d.code}[/] {escape(d.message)} [dim]({d.name})[/]"
    )
    source_line = _source_line(d, lines_cache)
    if source_line is not None:
        gutter = str(d.line)
        width = (d.span.end_column if d.span.end_line == d.line else len(source_line) + 1) - d.column
        console.print(f"[blue]{' ' * len(gutter)} |[/]")
        console.print(f"[blue]{gutter} |[/] {escape(source_line)}")
        console.print(f"[blue]{' ' * len(gutter)} |[/] {' ' * (d.column - 1)}[{style}]{'^' * max(width, 1)}[/]")
    if d.hint:
        console.print(f"[blue]{' ' * len(str(d.line))} =[/] [bold]hint[/]: {escape(d.hint)}")
    console.print()


def _source_line(d: Diagnostic, cache: dict[str, list[str]]) -> str | None:
    if d.cell is not None:
        return None  # notebook cells are not line-addressable in the file itself
    if d.path not in cache:
        try:
            cache[d.path] = Path(d.path).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            cache[d.path] = []
    lines = cache[d.path]
    return lines[d.line - 1].rstrip() if 0 < d.line <= len(lines) else None


def summary(result: LintResult) -> str:
    if not result.diagnostics and not result.errors:
        return f"[bold green]All checks passed![/] ({result.files} file{'s' * (result.files != 1)} checked)"
    counts = Counter(d.severity for d in result.diagnostics)
    parts = [f"{counts[s]} {s.value}{'s' * (counts[s] != 1)}" for s in Severity if counts[s]]
    if result.errors:
        parts.append(f"{len(result.errors)} file error{'s' * (len(result.errors) != 1)}")
    total = len(result.diagnostics)
    return f"Found {total} finding{'s' * (total != 1)} ({', '.join(parts)}) in {result.files} file{'s' * (result.files != 1)}."
