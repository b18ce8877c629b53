"""``--format concise``: one line per finding (``path:line:col: CODE [*] message``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from trainlint.reporters import ReportOptions
from trainlint.reporters.text import fix_summary, location

if TYPE_CHECKING:
    from trainlint.linter import LintResult

NAME = "concise"


def render(result: LintResult, stream: TextIO, options: ReportOptions = ReportOptions()) -> None:
    for d in result.diagnostics:
        marker = " [*]" if options.applicable(d) else ""
        stream.write(f"{location(d)}: {d.code}{marker} {d.message}\n")
    for error in result.errors:
        stream.write(f"{error.path}: error: {error.message}\n")
    total = len(result.diagnostics)
    if total:
        stream.write(f"Found {total} finding{'s' * (total != 1)}.\n")
        fixes = fix_summary(result, options)
        if fixes:
            stream.write(f"{fixes}\n")
