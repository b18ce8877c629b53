"""CI output formats against a fixture: SARIF (schema-validated), GitHub annotations,
GitLab Code Quality, JSON lines, concise; plus --output-file, --statistics, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner, Result

from trainlint.cli import main
from trainlint.diagnostics import Diagnostic, FileError, Severity, Span
from trainlint.linter import LintResult
from trainlint.reporters import formats
from trainlint.reporters.github import escape_data, escape_property
from trainlint.rule import all_rules

SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"

TRAIN = """\
import torch
import torch.nn.functional as F
from torch.cuda.amp import autocast

for x, y in loader:
    with autocast():
        probs = F.softmax(model(x), dim=1)
        loss = F.cross_entropy(
            probs,
            y,
        )
    loss.backward()
"""

NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "# Training"},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "import torch\n\nscaler = torch.cuda.amp.GradScaler()\n"},
    ],
    "metadata": {"language_info": {"name": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "explore.ipynb").write_text(json.dumps(NOTEBOOK))
    return tmp_path


def check(*args: str) -> Result:
    return CliRunner().invoke(main, ["check", "--no-cache", *args])


def test_every_format_is_offered() -> None:
    assert {"sarif", "github", "gitlab", "json-lines", "concise", "text", "json"} <= set(formats())


def test_sarif_is_valid_and_complete(project: Path) -> None:
    result = check("--format", "sarif")
    assert result.exit_code == 1
    log = json.loads(result.output)
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(log)
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [rule.code for rule in all_rules()]
    tl101 = next(r for r in rules if r["id"] == "TL101")
    assert tl101["helpUri"].endswith("/rules/TL101-softmax-before-cross-entropy.md")
    assert tl101["defaultConfiguration"]["level"] == "error"
    by_rule = {(r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]): r for r in run["results"]}
    loss = by_rule[("TL101", "train.py")]
    assert loss["locations"][0]["physicalLocation"]["region"] == {"startLine": 8, "startColumn": 16, "endLine": 11, "endColumn": 10}
    assert rules[loss["ruleIndex"]]["id"] == "TL101"
    cell = by_rule[("TL505", "explore.ipynb")]
    assert cell["properties"] == {"cell": 2}
    assert cell["message"]["text"].startswith("cell 2: ")
    assert cell["locations"][0]["physicalLocation"]["region"]["startLine"] == 3
    assert run["invocations"][0]["executionSuccessful"] is True


def test_sarif_reports_file_errors_as_notifications() -> None:
    result = LintResult(errors=[FileError("broken.py", "internal error")], files=1)
    log = _render("sarif", result)
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(json.loads(log))
    invocation = json.loads(log)["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    assert invocation["toolExecutionNotifications"][0]["message"]["text"] == "internal error"


def test_github_annotations(project: Path) -> None:
    lines = check("--format", "github").output.splitlines()
    assert "::warning file=train.py,line=3,endLine=3,col=1,endColumn=36,title=trainlint (TL505)::TL505 " in "\n".join(lines)
    multi_line = next(line for line in lines if "TL101" in line)
    assert multi_line.startswith("::error file=train.py,line=8,endLine=11,title=trainlint (TL101)::")  # no col
    notebook = next(line for line in lines if "explore.ipynb" in line)
    assert notebook.startswith("::warning file=explore.ipynb,title=trainlint (TL505)::cell 2, line 3: TL505 ")


def test_github_escaping_and_severities() -> None:
    assert escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
    assert escape_property("dir,a:b/c%.py") == "dir%2Ca%3Ab/c%25.py"
    info = _diagnostic(severity=Severity.INFO, path="a,b.py", message="50%\nmore")
    output = _render("github", LintResult([info], files=1))
    assert output == "::notice file=a%2Cb.py,line=2,endLine=2,col=5,endColumn=9,title=trainlint (TL101)::TL101 50%25%0Amore (softmax-before-cross-entropy)\n"


def test_gitlab_fingerprints_are_stable_and_distinct(project: Path) -> None:
    before = json.loads(check("--format", "gitlab").output)
    (project / "train.py").write_text("# a new first line\n\n" + TRAIN)
    after = json.loads(check("--format", "gitlab").output)
    assert [i["fingerprint"] for i in before] == [i["fingerprint"] for i in after]
    assert [i["location"]["lines"]["begin"] + 2 for i in before if i["location"]["path"] == "train.py"] == [
        i["location"]["lines"]["begin"] for i in after if i["location"]["path"] == "train.py"
    ]
    issue = next(i for i in before if i["check_name"].startswith("TL101"))
    assert issue["severity"] == "major" and issue["location"] == {"path": "train.py", "lines": {"begin": 8, "end": 11}}


def test_gitlab_identical_lines_get_distinct_fingerprints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "amp.py").write_text("import torch\nA = torch.cuda.amp.GradScaler()\nA = torch.cuda.amp.GradScaler()\n")
    issues = json.loads(check("--format", "gitlab").output)
    assert len(issues) == 2 and len({i["fingerprint"] for i in issues}) == 2


def test_json_lines_match_the_json_format(project: Path) -> None:
    lines = [json.loads(line) for line in check("--format", "json-lines").output.splitlines()]
    assert lines == json.loads(check("--format", "json").output)["diagnostics"]


def test_concise_prints_one_line_per_finding(project: Path) -> None:
    lines = check("--format", "concise").output.splitlines()
    assert lines[-2] == f"Found {len(lines) - 2} findings."
    # Like ruff: safe fixes are [*]; the unsafe ones (TL101, the notebook's GradScaler) are
    # only counted as hidden.
    assert lines[-1] == "[*] 2 fixable with the `--fix` option (2 hidden fixes can be enabled with the `--unsafe-fixes` option)."
    assert "explore.ipynb:cell 2:line 3:col 10: TL505 `torch" in "\n".join(lines)
    assert any(line.startswith("train.py:8:16: TL101 ") and "[*]" not in line for line in lines)
    unsafe = check("--format", "concise", "--unsafe-fixes").output.splitlines()
    assert any(line.startswith("train.py:8:16: TL101 [*] ") for line in unsafe)
    assert unsafe[-1] == "[*] 4 fixable with the `--fix` option."


def test_output_file(project: Path) -> None:
    result = check("--format", "sarif", "--output-file", "report.sarif")
    assert result.exit_code == 1 and result.output == ""
    assert json.loads((project / "report.sarif").read_text())["version"] == "2.1.0"


def test_statistics(project: Path) -> None:
    result = check("--statistics")
    assert result.exit_code == 1
    assert result.output.splitlines() == ["3\tTL505\t[*] deprecated-cuda-amp", "1\tTL101\t    softmax-before-cross-entropy"]
    unsafe = check("--statistics", "--unsafe-fixes").output.splitlines()
    assert unsafe[1] == "1\tTL101\t[*] softmax-before-cross-entropy"
    rows = json.loads(check("--statistics", "--format", "json").output)
    assert rows[0] == {"code": "TL505", "name": "deprecated-cuda-amp", "count": 3, "fixable": 2}


def test_exit_codes(project: Path) -> None:
    assert check().exit_code == 1
    assert check("--exit-zero").exit_code == 0
    assert check("--select", "TL802").exit_code == 0
    assert check("missing.py").exit_code == 2


def _diagnostic(severity: Severity, path: str, message: str) -> Diagnostic:
    return Diagnostic("TL101", "softmax-before-cross-entropy", severity, message, "", path, Span(2, 5, 2, 9))


def _render(name: str, result: LintResult) -> str:
    from io import StringIO

    stream = StringIO()
    formats()[name].render(result, stream)
    return stream.getvalue()
