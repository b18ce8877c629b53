"""``--format json``: the versioned machine-readable contract (see README)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TextIO

from trainlint.reporters import ReportOptions

if TYPE_CHECKING:
    from trainlint.linter import LintResult

NAME = "json"
SCHEMA_VERSION = 1


def render(result: LintResult, stream: TextIO, options: ReportOptions = ReportOptions()) -> None:
    payload = {
        "version": SCHEMA_VERSION,
        "diagnostics": [d.to_dict() for d in result.diagnostics],
        "errors": [e.to_dict() for e in result.errors],
    }
    json.dump(payload, stream, indent=2)
    stream.write("\n")
