"""The command line: exit codes, the JSON contract, configuration, suppression, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from trainlint.cli import main

BUGGY = """\
import torch.nn as nn
import torch.nn.functional as F

criterion = nn.CrossEntropyLoss()
for x, y in loader:
    probs = F.softmax(net(x), dim=1)
    loss = criterion(probs, y)
"""


def run(*args: str, cwd: Path) -> Result:
    """Invoke the CLI from ``cwd`` (paths in output are relative to the working directory)."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (tmp_path / "train.py").write_text(BUGGY)
    (tmp_path / "clean.py").write_text("import torch\nx = torch.zeros(3)\n")
    return tmp_path


def test_findings_exit_1_and_text_output(project: Path) -> None:
    result = run("check", "train.py", cwd=project)
    assert result.exit_code == 1
    # ruff's layout: the code and message, then the location on a line of its own.
    assert "TL101 CrossEntropyLoss" in result.output and " --> train.py:7:12\n" in result.output
    assert "^^^^" in result.output and "hint:" in result.output
    assert "Found 1 finding" in result.output


def test_clean_file_exits_0(project: Path) -> None:
    result = run("check", "clean.py", cwd=project)
    assert result.exit_code == 0, result.output
    assert "All checks passed" in result.output


def test_exit_zero(project: Path) -> None:
    assert run("check", "--exit-zero", "train.py", cwd=project).exit_code == 0


def test_json_contract(project: Path) -> None:
    result = run("check", "--format", "json", ".", cwd=project)
    payload = json.loads(result.output)
    assert payload["version"] == 1 and payload["errors"] == []
    (finding,) = payload["diagnostics"]
    assert list(finding) == [
        "code", "name", "severity", "message", "hint", "path", "line", "column", "end_line", "end_column",
    ]
    assert finding["code"] == "TL101" and finding["name"] == "softmax-before-cross-entropy"
    assert (finding["path"], finding["line"], finding["column"]) == ("train.py", 7, 12)
    assert (finding["end_line"], finding["end_column"]) == (7, 31)
    assert finding["severity"] == "error"


def test_select_and_ignore(project: Path) -> None:
    assert run("check", "--select", "TL2", "train.py", cwd=project).exit_code == 0
    assert run("check", "--ignore", "TL1", "train.py", cwd=project).exit_code == 0
    assert run("check", "--select", "TL1", "train.py", cwd=project).exit_code == 1
    assert run("check", "--select", "softmax-before-cross-entropy", "train.py", cwd=project).exit_code == 1


def test_unknown_selector_is_a_usage_error(project: Path) -> None:
    result = run("check", "--select", "XY123", "train.py", cwd=project)
    assert result.exit_code == 2
    assert "unknown rule selector 'XY123'" in result.output
    assert "Traceback" not in result.output


def test_missing_path_exits_2_with_one_line(project: Path) -> None:
    result = run("check", "nope.py", cwd=project)
    assert result.exit_code == 2
    assert result.output.strip() == "trainlint: error: nope.py: no such file or directory"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[tool.trainlint]\nselct = ["TL1"]\n', "unknown key(s) selct"),
        ('[tool.trainlint]\nselect = "TL1"\n', "select must be a list of strings"),
        ('[tool.trainlint]\nignore = ["TL9999"]\n', "unknown rule selector 'TL9999'"),
        ("[tool.trainlint\nselect = 1\n", "is not valid TOML"),
    ],
)
def test_bad_config_exits_2(project: Path, table: str, message: str) -> None:
    (project / "pyproject.toml").write_text(table)
    result = run("check", "train.py", cwd=project)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_config_ignore_exclude_and_per_file_ignores(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.trainlint]\nignore = ["TL101"]\n')
    assert run("check", ".", cwd=project).exit_code == 0
    (project / "pyproject.toml").write_text('[tool.trainlint]\nper-file-ignores = { "train.py" = ["TL1"] }\n')
    assert run("check", ".", cwd=project).exit_code == 0
    (project / "pyproject.toml").write_text('[tool.trainlint]\nexclude = ["train.py"]\n')
    assert run("check", ".", cwd=project).exit_code == 0
    # An explicitly named file is linted even when excluded, like ruff without --force-exclude.
    assert run("check", "train.py", cwd=project).exit_code == 1


def test_default_excludes_skip_virtualenvs(project: Path) -> None:
    venv = project / ".venv" / "lib"
    venv.mkdir(parents=True)
    (venv / "bad.py").write_text(BUGGY)
    (project / "train.py").write_text("x = 1\n")
    assert run("check", ".", cwd=project).exit_code == 0


def test_noqa_comments(project: Path) -> None:
    (project / "train.py").write_text(BUGGY.replace("criterion(probs, y)", "criterion(probs, y)  # noqa: TL101"))
    assert run("check", "train.py", cwd=project).exit_code == 0
    (project / "train.py").write_text(BUGGY.replace("criterion(probs, y)", "criterion(probs, y)  # noqa: TL2"))
    assert run("check", "train.py", cwd=project).exit_code == 1
    (project / "train.py").write_text("# trainlint: noqa\n" + BUGGY)
    assert run("check", "train.py", cwd=project).exit_code == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"def f(:\n    pass\n", "syntax error"),
        (b"x = '\xff\xfe'\n", "not valid utf-8"),
        (b"import torch\nx = (\n", "syntax error"),
    ],
)
def test_unparsable_files_are_tl000_and_the_run_continues(project: Path, content: bytes, message: str) -> None:
    (project / "broken.py").write_bytes(content)
    result = run("check", "--format", "json", ".", cwd=project)
    assert result.exit_code == 1
    payload = json.loads(result.output)
    codes = sorted(d["code"] for d in payload["diagnostics"])
    assert codes == ["TL000", "TL101"], "the broken file must not stop the run"
    parse_error = next(d for d in payload["diagnostics"] if d["code"] == "TL000")
    assert parse_error["path"] == "broken.py" and message in parse_error["message"]


def test_empty_file_is_fine(project: Path) -> None:
    (project / "empty.py").write_text("")
    assert run("check", "empty.py", cwd=project).exit_code == 0


def test_rules_and_rule_commands(project: Path) -> None:
    listing = run("rules", cwd=project)
    assert listing.exit_code == 0 and "TL101" in listing.output and "softmax-before-cross-entropy" in listing.output
    page = run("rule", "TL101", cwd=project)
    assert page.exit_code == 0 and "Why is this bad" in page.output
    assert run("rule", "softmax-before-cross-entropy", cwd=project).exit_code == 0
    unknown = run("rule", "TL999", cwd=project)
    assert unknown.exit_code == 2 and "unknown rule" in unknown.output


def test_linting_never_imports_torch(project: Path) -> None:
    code = (
        "import sys\n"
        "from trainlint.cli import main\n"
        "try:\n"
        "    main(['check', '--exit-zero', '.'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'trainlint check imported torch'\n"
        "print('no torch')\n"
    )
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    result = subprocess.run([sys.executable, "-c", code], cwd=fixtures, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "no torch" in result.stdout
