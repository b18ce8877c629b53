"""What the package promises its users: metadata, extras, typing marker, license, the
language server's install hint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainlint.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_metadata_and_extras() -> None:
    project = PROJECT["project"]
    assert project["optional-dependencies"]["probe"] == ["torch>=2.0"]  # no upper bound
    assert any(dep.startswith("pygls") for dep in project["optional-dependencies"]["server"])
    assert "Typing :: Typed" in project["classifiers"] and {"Homepage", "Changelog"} <= set(project["urls"])
    assert project["license-files"] == ["LICENSE"] and (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert {"LICENSE", "CHANGELOG.md"} <= set(PROJECT["tool"]["hatch"]["build"]["targets"]["sdist"]["include"])
    assert (ROOT / "trainlint" / "py.typed").exists() and (ROOT / "CHANGELOG.md").exists()


def test_ci_runs_the_readme_commands_and_mypy() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ("pip install -q torch==2.13.0", 'pip install -q -e ".[probe,dev,test]"', "python -m pytest tests", "mypy trainlint/"):
        assert command in ci
    assert 'pip install torch==2.13.0 && pip install -e ".[probe,dev,test]" && python -m pytest tests' in readme


def test_server_without_pygls_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "trainlint.server.protocol", raising=False)
    monkeypatch.setitem(sys.modules, "pygls.lsp.server", None)  # as if pygls were not installed
    result = CliRunner().invoke(main, ["server"])
    assert result.exit_code == 1 and 'pip install "trainlint[server]"' in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
