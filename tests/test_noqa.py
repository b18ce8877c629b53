"""`# noqa` hygiene: TL901 unused-noqa (with its fix) and TL902 unknown-noqa-code, the
file-level `# trainlint: noqa: CODE`, comments only (never strings), and --add-noqa."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainlint.cli import main

TL505 = "import torch\nscaler = torch.cuda.amp.GradScaler()\n"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def findings(*args: str) -> list[tuple[int, str, str]]:
    result = CliRunner().invoke(main, ["check", "--no-cache", "--format", "json", *args])
    assert result.exit_code in (0, 1), result.output
    return [(d["line"], d["code"], d["message"]) for d in json.loads(result.output)["diagnostics"]]


def test_unused_and_unknown_codes_are_opt_in_findings(root: Path) -> None:
    (root / "train.py").write_text(
        "import torch\n"
        "scaler = torch.cuda.amp.GradScaler()  # noqa: TL505\n"  # used
        "x = 1  # noqa: TL505, E501\n"  # TL505 unused; E501 is another tool's
        "y = 2  # noqa: TL1O1\n"  # a typo: no such code
        "z = 3  # noqa\n"  # bare: silences anything, never judged
        "w = 4  # noqa: TL505 legacy loop\n"  # words after the codes are not codes
    )
    assert findings("train.py") == []  # off by default
    found = findings("--extend-select", "TL901,TL902", "train.py")
    assert [(line, code) for line, code, _ in found] == [(3, "TL901"), (4, "TL902"), (6, "TL901")]
    assert found[0][2] == "unused `noqa` directive (unused: TL505)"
    assert found[1][2] == "unknown rule code TL1O1 in `noqa` directive"


def test_codes_of_rules_that_did_not_run_are_non_enabled_and_kept_by_the_fix(root: Path) -> None:
    (root / "train.py").write_text("x = 1  # noqa: TL801\n")
    found = findings("--select", "TL5,TL901", "train.py")
    assert found == [(1, "TL901", "unused `noqa` directive (non-enabled: TL801)")]
    CliRunner().invoke(main, ["check", "--no-cache", "--select", "TL5,TL901", "--fix", "train.py"])
    assert (root / "train.py").read_text() == "x = 1  # noqa: TL801\n"


def test_fix_removes_unused_codes_only(root: Path) -> None:
    source = (
        "import torch\n"
        "scaler = torch.cuda.amp.GradScaler()  # noqa: TL505, TL801\n"
        "x = 1  # noqa: TL505, E501\n"
        "y = 2  # noqa: TL505  # why: kept\n"
        "z = 3  # noqa: TL505\n"
    )
    (root / "train.py").write_text(source)
    result = CliRunner().invoke(main, ["check", "--no-cache", "--extend-select", "TL901", "--fix", "train.py"])
    assert result.exit_code == 0, result.output
    assert (root / "train.py").read_text() == (
        "import torch\n"
        "scaler = torch.cuda.amp.GradScaler()  # noqa: TL505\n"
        "x = 1  # noqa: E501\n"
        "y = 2  # why: kept\n"
        "z = 3\n"
    )
    again = CliRunner().invoke(main, ["check", "--no-cache", "--extend-select", "TL901", "--fix", "train.py"])
    assert again.exit_code == 0 and "Fixed 0" in again.output


def test_noqa_inside_a_string_is_not_a_directive(root: Path) -> None:
    source = 'import torch\nscaler = torch.cuda.amp.GradScaler(note="# noqa: TL505")\nhelp = "# noqa: TL505"\n'
    (root / "train.py").write_text(source)
    found = findings("--extend-select", "TL901", "train.py")
    assert [(line, code) for line, code, _ in found] == [(2, "TL505")]
    CliRunner().invoke(main, ["check", "--no-cache", "--extend-select", "TL901", "--fix", "--select", "TL901", "train.py"])
    assert (root / "train.py").read_text() == source


def test_file_level_codes(root: Path) -> None:
    (root / "train.py").write_text("# trainlint: noqa: TL505\n" + TL505 + "state = torch.load(p, weights_only=False)\n")
    assert [code for _, code, _ in findings("train.py")] == ["TL801"]
    (root / "train.py").write_text("# trainlint: noqa\n" + TL505)
    assert findings("train.py") == []
    # Not a file-level directive: mentioned inside a line of code.
    (root / "train.py").write_text(TL505 + 'x = "# trainlint: noqa"\n')
    assert [code for _, code, _ in findings("train.py")] == ["TL505"]


def test_add_noqa(root: Path) -> None:
    source = (
        "import torch\n"
        "scaler = torch.cuda.amp.GradScaler()\n"
        "other = torch.cuda.amp.GradScaler()  # noqa: E501\n"
        'doc = torch.cuda.amp.autocast(enabled="""\n'
        'x""")\n'
    )
    (root / "train.py").write_bytes(source.replace("\n", "\r\n").encode())
    result = CliRunner().invoke(main, ["check", "--add-noqa", "train.py"])
    assert result.exit_code == 0, result.output
    assert "Added 2 noqa directives." in result.output
    assert "train.py:4: no `# noqa` added" in result.output  # a comment there would end up in the string
    assert (root / "train.py").read_bytes().decode() == (
        "import torch\r\n"
        "scaler = torch.cuda.amp.GradScaler()  # noqa: TL505\r\n"
        "other = torch.cuda.amp.GradScaler()  # noqa: E501, TL505\r\n"
        'doc = torch.cuda.amp.autocast(enabled="""\r\n'
        'x""")\r\n'
    )
    assert [line for line, _, _ in findings("train.py")] == [4]
