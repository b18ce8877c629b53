"""``--format sarif``: SARIF 2.1.0, as read by GitHub code scanning and most CI dashboards.

``tool.driver.rules`` describes every registered rule (not only those found), so that a
dashboard can show the help of a rule from any run. Notebook findings point at the
``.ipynb`` file with the line inside the cell, and name the cell in the message and in
``properties.cell``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TextIO

from trainlint import __version__
from trainlint.catalogue import page_for
from trainlint.diagnostics import Diagnostic, Severity

from trainlint.reporters import ReportOptions

if TYPE_CHECKING:
    from trainlint.linter import LintResult
    from trainlint.rule import Rule

NAME = "sarif"
SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# Rule pages as published in the repository (the wheel bundles them too).
PAGES_URL = "https://github.com/trainlint/trainlint/blob/main/rules/"
INFORMATION_URL = "https://github.com/trainlint/trainlint"
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def render(result: LintResult, stream: TextIO, options: ReportOptions = ReportOptions()) -> None:
    from trainlint.rule import all_rules

    rules = list(all_rules())
    index = {rule.code: position for position, rule in enumerate(rules)}
    run = {
        "tool": {
            "driver": {
                "name": "trainlint",
                "version": __version__,
                "informationUri": INFORMATION_URL,
                "rules": [_descriptor(rule) for rule in rules],
            }
        },
        "results": [_result(d, index) for d in result.diagnostics],
        "invocations": [_invocation(result)],
    }
    json.dump({"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}, stream, indent=2)
    stream.write("\n")


def _descriptor(rule: type[Rule]) -> dict[str, Any]:
    descriptor: dict[str, Any] = {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary or rule.message},
        "fullDescription": {"text": f"{rule.summary} {rule.hint}".strip()},
        "help": {"text": rule.hint or rule.summary},
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
    }
    page = page_for(rule.code)
    if page is not None:
        descriptor["helpUri"] = PAGES_URL + page.name
    return descriptor


def _result(d: Diagnostic, index: dict[str, int]) -> dict[str, Any]:
    where = f"cell {d.cell}: " if d.cell is not None else ""
    result: dict[str, Any] = {
        "ruleId": d.code,
        "level": LEVELS[d.severity],
        "message": {"text": f"{where}{d.message}. Hint: {d.hint}" if d.hint else f"{where}{d.message}"},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": d.path},
                    "region": {
                        "startLine": d.line,
                        "startColumn": d.column,
                        "endLine": d.span.end_line,
                        "endColumn": d.span.end_column,
                    },
                }
            }
        ],
    }
    if d.code in index:
        result["ruleIndex"] = index[d.code]
    if d.cell is not None:
        result["properties"] = {"cell": d.cell}
    return result


def _invocation(result: LintResult) -> dict[str, Any]:
    return {
        "executionSuccessful": not result.errors,
        "toolExecutionNotifications": [
            {
                "level": "error",
                "message": {"text": error.message},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": error.path}}}],
            }
            for error in result.errors
        ],
    }
