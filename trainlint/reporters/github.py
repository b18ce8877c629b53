"""``--format github``: GitHub Actions workflow commands, shown as annotations on the diff.

https://docs.github.com/actions/reference/workflow-commands-for-github-actions
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from trainlint.diagnostics import Diagnostic, Severity

from trainlint.reporters import ReportOptions

if TYPE_CHECKING:
    from trainlint.linter import LintResult

NAME = "github"
COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def render(result: LintResult, stream: TextIO, options: ReportOptions = ReportOptions()) -> None:
    for d in result.diagnostics:
        stream.write(f"::{COMMANDS[d.severity]} {_properties(d)}::{escape_data(_message(d))}\n")
    for error in result.errors:
        stream.write(f"::error file={escape_property(error.path)},title=trainlint::{escape_data(error.message)}\n")


def _properties(d: Diagnostic) -> str:
    pairs = [("file", d.path)]
    # A line in a notebook's cell is not a line of the .ipynb file: annotate the file.
    if d.cell is None:
        pairs += [("line", str(d.line)), ("endLine", str(d.span.end_line))]
        # GitHub ignores columns on annotations that span several lines.
        if d.span.end_line == d.line:
            pairs += [("col", str(d.column)), ("endColumn", str(d.span.end_column))]
    pairs.append(("title", f"trainlint ({d.code})"))
    return ",".join(f"{key}={escape_property(value)}" for key, value in pairs)


def _message(d: Diagnostic) -> str:
    where = f"cell {d.cell}, line {d.line}: " if d.cell is not None else ""
    return f"{where}{d.code} {d.message} ({d.name})"


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")
