"""``--format json-lines``: one JSON object per line, per finding then per file error; the
objects are those of ``--format json`` (file errors carry ``"error": true``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TextIO

from trainlint.reporters import ReportOptions

if TYPE_CHECKING:
    from trainlint.linter import LintResult

NAME = "json-lines"


def render(result: LintResult, stream: TextIO, options: ReportOptions = ReportOptions()) -> None:
    for d in result.diagnostics:
        stream.write(json.dumps(d.to_dict()) + "\n")
    for error in result.errors:
        stream.write(json.dumps({**error.to_dict(), "error": True}) + "\n")
