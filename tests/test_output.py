"""Text output: ruff's layout, wrapping at the terminal width between words, notebook
snippets, colour switches; `trainlint rules --format json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainlint.cli import main
from trainlint.rule import all_rules

TRAIN = """\
import torch.nn as nn
import torch.nn.functional as F

criterion = nn.CrossEntropyLoss()
for x, y in loader:
    probs = F.softmax(net(x), dim=1)
    loss = criterion(probs, y)
"""


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(TRAIN)
    return tmp_path


def text(*args: str, env: dict[str, str] | None = None) -> str:
    return CliRunner().invoke(main, ["check", "--no-cache", *args], env=env or {}).output


@pytest.mark.parametrize("columns", [80, 120])
def test_messages_wrap_between_words_at_the_terminal_width(root: Path, columns: int) -> None:
    output = text("train.py", env={"COLUMNS": str(columns)})
    lines = output.splitlines()
    assert all(len(line) <= columns for line in lines if not line.lstrip().startswith(("7 |", "|"))), output
    message = "CrossEntropyLoss receives probabilities from the softmax on line 6; it applies log_softmax itself"
    words = " ".join(" ".join(lines).split())
    assert message in words  # no word was cut
    assert lines[0].startswith("TL101 ") and " --> train.py:7:12" in lines


def test_no_wrapping_without_a_terminal(root: Path) -> None:
    first = text("train.py", env={"COLUMNS": ""}).splitlines()[0]
    assert first.startswith("TL101 ") and first.endswith("(softmax-before-cross-entropy)")


def test_colours_follow_no_color_and_force_color(root: Path) -> None:
    assert "\x1b[" not in text("train.py")  # not a terminal
    assert "\x1b[" in text("train.py", env={"FORCE_COLOR": "1"})
    assert "\x1b[31" not in text("train.py", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})


def test_notebook_findings_show_the_cell_line(root: Path) -> None:
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "# Training"},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "import torch\n%matplotlib inline\nscaler = torch.cuda.amp.GradScaler()\n"},
    ]
    (root / "nb.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    output = text("nb.ipynb")
    assert " --> nb.ipynb:cell 2:line 3:col 10" in output
    assert "3 | scaler = torch.cuda.amp.GradScaler()" in output


def test_rules_as_json() -> None:
    result = CliRunner().invoke(main, ["rules", "--format", "json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert [row["code"] for row in rows] == [rule.code for rule in all_rules()]
    by_code = {row["code"]: row for row in rows}
    assert by_code["TL505"]["fix"] == "safe" and by_code["TL402"]["fix"] == "unsafe" and by_code["TL101"]["fix"] == "unsafe"
    assert by_code["TL901"]["default"] is False and by_code["TL101"]["default"] is True
    assert by_code["TL801"]["page"] == "TL801-torch-load-weights-only-false.md"
    assert set(by_code["TL101"]) == {"code", "name", "severity", "fix", "default", "summary", "page"}
