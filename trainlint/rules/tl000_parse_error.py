from __future__ import annotations

from collections.abc import Iterator

from trainlint.diagnostics import Severity
from trainlint.rule import Context, Report, Rule


class ParseError(Rule):
    """Files that cannot be read or parsed. Reported by the linter itself, before any rule
    runs; registered so it can be selected, ignored and documented like any rule."""

    code = "TL000"
    name = "parse-error"
    severity = Severity.ERROR
    summary = "The file could not be read, decoded or parsed; it was skipped."
    triggers = ("\0never\0",)

    def check(self, ctx: Context) -> Iterator[Report]:
        return iter(())
