"""``--statistics``: the number of findings per rule, most frequent first (like ruff).

Not a ``--format`` of its own (no ``NAME``): it summarises in text, or in JSON when the
chosen format is a JSON one.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any, TextIO

from trainlint.reporters import ReportOptions

if TYPE_CHECKING:
    from trainlint.linter import LintResult

JSON_FORMATS = frozenset({"json", "json-lines"})


def statistics(result: LintResult, options: ReportOptions = ReportOptions()) -> list[dict[str, Any]]:
    counts = Counter(d.code for d in result.diagnostics)
    names = {d.code: d.name for d in result.diagnostics}
    fixable = Counter(d.code for d in result.diagnostics if options.applicable(d))
    return [
        {"code": code, "name": names[code], "count": count, "fixable": fixable[code]}
        for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def render_statistics(
    result: LintResult, stream: TextIO, output_format: str, options: ReportOptions = ReportOptions()
) -> None:
    rows = statistics(result, options)
    if output_format in JSON_FORMATS:
        json.dump(rows, stream, indent=2)
        stream.write("\n")
        return
    width = max((len(str(row["count"])) for row in rows), default=1)
    for row in rows:
        marker = "[*] " if row["fixable"] else "    "
        stream.write(f"{row['count']:>{width}}\t{row['code']}\t{marker}{row['name']}\n")
