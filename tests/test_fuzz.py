"""Fuzzing, as flake8-bugbear does: generated programs never crash the linter and get the
positions libcst would give them, and the linter gets through every source file of an
installed package without an internal error. The bounded test runs with the suite; the
exhaustive ones take minutes (``python -m pytest tests -m exhaustive``).

Every generated program starts with a comment naming every rule's trigger words, so that
every rule runs on it, not only the syntax check.
"""

from __future__ import annotations

import os
from pathlib import Path

import hypothesmith
import libcst as cst
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libcst.metadata import MetadataWrapper, PositionProvider

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.parsing import NestingError, parse
from trainlint.cli import main
from trainlint.config import Settings
from trainlint.rule import all_rules
from trainlint.runner import RunOptions, run

TRIGGERS = "# " + " ".join(sorted({trigger for rule in all_rules() for trigger in rule.triggers})) + "\n"
# Bounded so that the suite stays fast; the slow test below explores further.
FAST = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))


def check_program(source: str, folder: Path) -> None:
    """Lint ``source`` with the CLI: no crash, no traceback, exit code 0 or 1."""
    (folder / "generated.py").write_text(TRIGGERS + source, encoding="utf-8", newline="")
    old = os.getcwd()
    os.chdir(folder)
    try:
        result = CliRunner().invoke(main, ["check", "--no-cache", "generated.py"])
    finally:
        os.chdir(old)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert result.exit_code in (0, 1), result.output


def check_positions(source: str) -> None:
    """Positions computed statement by statement are PositionProvider's."""
    try:
        parsed = parse(source)
    except (cst.ParserSyntaxError, NestingError):
        return
    model = ModuleModel(Path("generated.py"), parsed, "generated", "")
    expected = MetadataWrapper(parsed.tree, unsafe_skip_copy=True).resolve(PositionProvider)
    for node, where in expected.items():
        if model.parent_of(node) is not None:
            assert model.span_of(node) == where, (type(node).__name__, source)


@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # hypothesmith compiles what it generates
@FAST
@given(source=hypothesmith.from_grammar())
def test_generated_programs_never_crash_the_linter(tmp_path_factory: pytest.TempPathFactory, source: str) -> None:
    check_program(source, tmp_path_factory.mktemp("fuzz"))
    check_positions(source)


@pytest.mark.slow
@pytest.mark.exhaustive
@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@SLOW
@given(source=st.one_of(hypothesmith.from_grammar(), hypothesmith.from_node()))
def test_many_generated_programs_never_crash_the_linter(tmp_path_factory: pytest.TempPathFactory, source: str) -> None:
    check_program(source, tmp_path_factory.mktemp("fuzz"))
    check_positions(source)


@pytest.mark.slow
@pytest.mark.exhaustive
def test_every_source_file_of_torch_lints_without_an_internal_error(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    package = Path(torch.__file__).parent
    result = run([package], Settings(root=tmp_path), RunOptions(cache=False))
    assert result.files > 1000
    assert not result.errors, result.errors[:10]
