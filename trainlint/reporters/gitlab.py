"""``--format gitlab``: a GitLab Code Quality report (a JSON array of issues).

Fingerprints must survive unrelated edits, or GitLab shows every finding below an edit as
"fixed" and "new": they hash the path, the rule code, the finding's source line with its
whitespace normalised, and the finding's rank among identical (path, code, line) triples,
never the line number.
https://docs.gitlab.com/ci/testing/code_quality/#code-quality-report-format
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import TYPE_CHECKING, Any, TextIO

from trainlint.diagnostics import Diagnostic, Severity
from trainlint.reporters._source import SourceLines

from trainlint.reporters import ReportOptions

if TYPE_CHECKING:
    from trainlint.linter import LintResult

NAME = "gitlab"
SEVERITIES = {Severity.ERROR: "major", Severity.WARNING: "minor", Severity.INFO: "info"}


def render(result: LintResult, stream: TextIO, options: ReportOptions = ReportOptions()) -> None:
    lines = SourceLines(options.sources)
    occurrences: Counter[tuple[str, str, str]] = Counter()
    issues = []
    for d in result.diagnostics:
        key = (d.path, d.code, " ".join(lines.line(d).split()))
        issues.append(_issue(d, fingerprint(*key, occurrences[key])))
        occurrences[key] += 1
    json.dump(issues, stream, indent=2)
    stream.write("\n")


def fingerprint(path: str, code: str, normalized_line: str, occurrence: int) -> str:
    # surrogateescape: a file name that is not valid UTF-8 still hashes (to its bytes).
    key = "\0".join((path, code, normalized_line, str(occurrence)))
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def _issue(d: Diagnostic, fingerprint: str) -> dict[str, Any]:
    where = f" (cell {d.cell})" if d.cell is not None else ""
    return {
        "description": f"{d.code} {d.message}{where}",
        "check_name": f"{d.code} {d.name}",
        "fingerprint": fingerprint,
        "severity": SEVERITIES[d.severity],
        "location": {"path": d.path, "lines": {"begin": d.line, "end": d.span.end_line}},
    }
