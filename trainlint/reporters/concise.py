"""``--format concise``: one line per finding (``path:line:col: CODE [*] message``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from trainlint.reporters.text import location

if TYPE_CHECKING:
    from trainlint.linter import LintResult

NAME = "concise"


def render(result: LintResult, stream: TextIO) -> None:
    for d in result.diagnostics:
        marker = " [*]" if d.fix is not None else ""
        stream.write(f"{location(d)}: {d.code}{marker} {d.message}\n")
    for error in result.errors:
        stream.write(f"{error.path}: error: {error.message}\n")
    total = len(result.diagnostics)
    if total:
        stream.write(f"Found {total} finding{'s' * (total != 1)}.\n")
