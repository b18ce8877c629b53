"""Inputs that used to hang, crash or mislead (issue 14's reproducers): FIFOs, symbolic
link loops and broken links, file names that are not UTF-8, unwritable outputs, line
breaks that are not Python's, usage errors, and paths with nothing to check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.parsing import parse
from trainlint.analysis.project import Project
from trainlint.cli import main

TL505 = "import torch\nctx = torch.cuda.amp.autocast()\n"  # a warning with a safe fix
posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and symbolic links")


def check(*args: str) -> Result:
    return CliRunner().invoke(main, ["check", *args], catch_exceptions=False)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(TL505)
    return tmp_path


def _json(result: Result) -> list[tuple[str, str]]:
    return [(d["path"], d["code"]) for d in json.loads(result.output)["diagnostics"]]


@posix_only
def test_fifo_next_to_a_script_is_skipped_not_read(root: Path) -> None:
    os.mkfifo(root / "x.py")
    (root / "sub").mkdir()
    os.mkfifo(root / "sub" / "y.py")
    # In a subprocess with a timeout: the bug was a hang. The FIFO named on the command line
    # is reported; the one found in a folder is skipped.
    command = [sys.executable, "-m", "trainlint", "check", "--format", "json", "x.py", "train.py", "sub"]
    run = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=60, check=False)
    found = {d["path"]: d["message"] for d in json.loads(run.stdout)["diagnostics"]}
    assert run.returncode == 1 and sorted(found) == ["train.py", "x.py"]
    assert "not a regular file" in found["x.py"]


@posix_only
def test_fifo_reached_by_the_sibling_scan_and_imports_is_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "helpers.py")
    (tmp_path / "engine.py").write_text("def train_one_epoch(model):\n    pass\n")
    (tmp_path / "run.py").write_text("from helpers import thing\nimport engine\nengine.train_one_epoch(m)\n")
    project = Project()
    model = project.add(tmp_path / "engine.py", parse((tmp_path / "engine.py").read_text()), "")
    callers = project.callers_of("train_one_epoch", model)  # reads every sibling's text
    assert {m.path.name for m in callers} == {"engine.py", "run.py"}
    importer = project.load(tmp_path / "run.py")
    assert isinstance(importer, ModuleModel)
    assert project.resolve_symbol(importer, "helpers.thing") is None


@posix_only
def test_stdin_as_a_path_is_not_a_silent_pass(root: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "trainlint", "check", "/dev/stdin"], input=TL505, cwd=root,
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert run.returncode == 1 and "All checks passed" not in run.stdout
    assert "not a regular file" in run.stdout and "trainlint check -" in run.stdout


@posix_only
def test_symlink_loop_and_broken_link_are_findings_named_by_the_link(root: Path) -> None:
    (root / "loop.py").symlink_to("loop.py")
    (root / "dangling.py").symlink_to("gone/target.py")
    (root / "pkg").mkdir()
    (root / "pkg" / "up").symlink_to("..")  # a folder cycle: links to folders are not followed
    result = check("--no-cache", "--format", "json", ".")
    assert result.exit_code == 1
    found = {d["path"]: d["message"] for d in json.loads(result.output)["diagnostics"]}
    assert found["loop.py"] == "cannot read file: symbolic link loop"
    assert "broken symbolic link" in found["dangling.py"] and "gone/target.py" in found["dangling.py"]
    assert "train.py" in found and not any("target.py" in path for path in found)
    named = check("--no-cache", "--format", "json", "loop.py", "dangling.py", "train.py")
    assert sorted(path for path, _ in _json(named)) == ["dangling.py", "loop.py", "train.py"]


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="file names must be bytes")
@pytest.mark.parametrize("args", [(), ("--no-cache",), ("--format", "gitlab"), ("--format", "github"), ("-o", "out/report.txt")])
def test_file_name_that_is_not_utf8(root: Path, args: tuple[str, ...]) -> None:
    with open(os.fsencode(root) + b"/bad_\xff.py", "w") as stream:
        stream.write(TL505)
    result = check(*args, ".")
    assert result.exit_code == 1, result.output
    assert "internal error" not in result.output and "Traceback" not in result.output
    report = (root / "out" / "report.txt").read_text() if "-o" in args else result.output
    assert "bad_" in report and "TL505" in report or "fingerprint" in report


def test_output_file_in_a_missing_folder_is_created(root: Path) -> None:
    result = check("--no-cache", "-o", "no/such/dir/out.txt", "train.py")
    assert result.exit_code == 1 and "TL505" in (root / "no/such/dir/out.txt").read_text()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_unwritable_output_is_one_line(root: Path) -> None:
    (root / "locked").mkdir(mode=0o500)
    result = check("--no-cache", "-o", "locked/out.txt", "train.py")
    assert result.exit_code == 2
    assert result.output.strip().startswith("trainlint: error: cannot write the report to locked/out.txt")


def test_unwritable_output_path_is_one_line(root: Path) -> None:
    (root / "afile").write_text("")
    result = check("--no-cache", "-o", "afile/out.txt", "train.py")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().startswith("trainlint: error: cannot write the report to afile/out.txt")


def test_fix_that_cannot_be_written_is_one_line(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainlint.runner

    def refuse(path: Path, data: bytes) -> None:
        raise PermissionError(13, "Permission denied")

    # A read-only folder, whoever runs the tests (root ignores directory permissions).
    monkeypatch.setattr(trainlint.runner, "write_atomically", refuse)
    result = CliRunner().invoke(main, ["check", "--no-cache", "--fix", "train.py"])
    assert result.exit_code == 2 and result.exception is None or isinstance(result.exception, SystemExit)
    assert "trainlint: error: cannot write the fixes of train.py: Permission denied" in result.output
    assert (root / "train.py").read_text() == TL505


@pytest.mark.parametrize("separator", ["\f", "\u2028", "\x0b", "\x1c", "\x85"])
def test_noqa_and_quoted_line_after_a_character_str_splitlines_breaks_on(root: Path, separator: str) -> None:
    source = f"import torch\nx = 1  #{separator} a comment\nscaler = torch.cuda.amp.GradScaler()  # noqa: TL505\ny = torch.cuda.amp.GradScaler()\n"
    (root / "train.py").write_text(source, encoding="utf-8")
    result = check("--no-cache", "--format", "json", "train.py")
    assert [(d["line"], d["code"]) for d in json.loads(result.output)["diagnostics"]] == [(4, "TL505")]
    text = check("--no-cache", "train.py").output
    assert "4 | y = torch.cuda.amp.GradScaler()" in text


def test_usage_errors_are_one_line() -> None:
    for args in (["check", "--no-such-option"], ["nope"], ["check", "--format", "xml"], ["check", "-j", "0"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, args
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("trainlint: error: "), result.output


def test_a_path_with_nothing_to_check_is_an_error(root: Path) -> None:
    (root / "empty").mkdir()
    result = check("empty")
    assert result.exit_code == 2
    assert result.output.strip() == "trainlint: error: no Python files or notebooks to check in empty"
    # Files dropped by --force-exclude (pre-commit) are not an error.
    (root / "trainlint.toml").write_text('extend-exclude = ["train.py"]\n')
    assert check("--force-exclude", "train.py").exit_code == 0
