"""Standard input (`trainlint check - --stdin-filename ...`) and the Python API
(`trainlint.check_paths`, `trainlint.check_source`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import trainlint
from trainlint.cli import main

TL505 = "import torch\nctx = torch.cuda.amp.autocast()\n"  # a warning with a safe fix
FIXED = 'import torch\nctx = torch.amp.autocast("cuda")\n'


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_stdin_is_linted_under_its_file_name(root: Path) -> None:
    result = CliRunner().invoke(main, ["check", "-", "--stdin-filename", "src/train.py", "--format", "json"], input=TL505)
    assert result.exit_code == 1
    (finding,) = json.loads(result.output)["diagnostics"]
    assert (finding["path"], finding["code"], finding["line"]) == ("src/train.py", "TL505", 2)
    # Without a path, --stdin-filename alone reads stdin too (as in ruff); text output
    # quotes the line from stdin, not from a file on disk.
    text = CliRunner().invoke(main, ["check", "--stdin-filename", "train.py", "--no-cache"], input=TL505)
    assert text.exit_code == 1 and "2 | ctx = torch.cuda.amp.autocast()" in text.output
    anonymous = CliRunner().invoke(main, ["check", "-", "--format", "concise"], input=TL505)
    assert anonymous.output.startswith("-:2:7: TL505")


def test_stdin_applies_config_and_per_file_ignores_by_its_name(root: Path) -> None:
    (root / "trainlint.toml").write_text('per-file-ignores = { "legacy/*" = ["TL505"] }\n')
    ignored = CliRunner().invoke(main, ["check", "-", "--stdin-filename", "legacy/old.py"], input=TL505)
    assert ignored.exit_code == 0, ignored.output
    assert CliRunner().invoke(main, ["check", "-", "--stdin-filename", "new.py"], input=TL505).exit_code == 1


def test_stdin_fix_prints_the_fixed_source(root: Path) -> None:
    # stdout carries only the code; the report goes to stderr.
    fixed = CliRunner().invoke(main, ["check", "-", "--stdin-filename", "train.py", "--fix"], input=TL505)
    assert fixed.exit_code == 0, fixed.output
    assert fixed.stdout == FIXED and "All checks passed" in fixed.stderr
    untouched = CliRunner().invoke(main, ["check", "-", "--fix"], input="x = 1\n")
    assert untouched.stdout == "x = 1\n" and untouched.exit_code == 0


def test_stdin_cannot_be_mixed_with_paths(root: Path) -> None:
    (root / "a.py").write_text("x = 1\n")
    result = CliRunner().invoke(main, ["check", "-", "a.py"], input="")
    assert result.exit_code == 2 and "cannot be combined" in result.output


def test_check_source_and_check_paths(root: Path) -> None:
    (root / "trainlint.toml").write_text('per-file-ignores = { "legacy/*" = ["TL505"] }\n')
    (root / "model.py").write_text(
        "import torch.nn as nn\nimport torch.nn.functional as F\n\n\nclass Net(nn.Module):\n"
        "    def forward(self, x):\n        return F.softmax(x, dim=1)\n"
    )
    train = "import torch.nn as nn\nfrom model import Net\n\nnet = Net()\nloss = nn.CrossEntropyLoss()(net(x), y)\n"
    # The source is analysed with the local modules it imports, and the settings of its path.
    assert [d.code for d in trainlint.check_source(train, path="train.py")] == ["TL101"]
    assert trainlint.check_source(TL505, path="legacy/x.py") == []
    assert [d.code for d in trainlint.check_source(TL505, path="x.py", ignore=["TL1"])] == ["TL505"]
    assert trainlint.check_source(TL505, path="x.py", select=["TL1"]) == []
    assert [d.code for d in trainlint.check_source("def f(:\n")] == ["TL000"]
    (root / "train.py").write_text(TL505)
    found = trainlint.check_paths(["."])
    assert [(d.path, d.code) for d in found] == [("train.py", "TL505")]
    assert trainlint.check_paths(["train.py"], config='ignore = ["TL505"]') == []
    with pytest.raises(trainlint.TrainlintError, match="no such file"):
        trainlint.check_paths(["missing.py"])
    with pytest.raises(trainlint.TrainlintError, match="unknown rule selector"):
        trainlint.check_source("x = 1\n", select=["XY1"])


def test_probe_without_torch_says_how_to_install_it() -> None:
    code = (
        "import sys\n"
        "for attempt in ('from trainlint import probe', 'from trainlint.probe import probe',\n"
        "                'import trainlint.probe as p; p(None, [])'):\n"
        "    for name in [m for m in sys.modules if m.startswith('trainlint')]:\n"
        "        del sys.modules[name]  # each attempt starts from a fresh import\n"
        "    sys.modules['torch'] = None  # as if torch were not installed\n"
        "    try:\n"
        "        exec(attempt)\n"
        "    except ModuleNotFoundError as exc:\n"
        "        print(exc)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count('pip install "trainlint[probe]"') == 3, run.stdout


def test_stdin_notebook_quotes_its_cell(root: Path) -> None:
    notebook = {
        "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "source": TL505}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }
    result = CliRunner().invoke(main, ["check", "-", "--stdin-filename", "nb.ipynb"], input=json.dumps(notebook))
    assert result.exit_code == 1
    assert " --> nb.ipynb:cell 1:line 2:col 7" in result.output
    assert "2 | ctx = torch.cuda.amp.autocast()" in result.output
