"""Configuration as ruff does it: config files, the nearest one per file, extend,
extend-select, excludes with gitignore-style patterns, .gitignore, target-version, and the
--show-settings / --show-files / --config KEY=VALUE options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from trainlint.cli import main

TL505 = "import torch\nscaler = torch.cuda.amp.GradScaler()\n"  # a warning, with a safe fix
TL801 = "import torch\nstate = torch.load(path, weights_only=False)\n"


def check(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["check", "--no-cache", *args], catch_exceptions=False)


def codes(root: Path, *args: str) -> list[tuple[str, str]]:
    result = check(root, "--format", "json", *args)
    assert result.exit_code in (0, 1), result.output
    return [(d["path"], d["code"]) for d in json.loads(result.output)["diagnostics"]]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(TL505)
    (tmp_path / "load.py").write_text(TL801)
    return tmp_path


@pytest.mark.parametrize("name", ["trainlint.toml", ".trainlint.toml"])
def test_trainlint_toml_is_read(root: Path, name: str) -> None:
    (root / name).write_text('ignore = ["TL505"]\n')
    assert codes(root, ".") == [("load.py", "TL801")]


def test_dot_trainlint_toml_wins_over_pyproject(root: Path) -> None:
    (root / "pyproject.toml").write_text('[tool.trainlint]\nignore = ["TL801"]\n')
    (root / ".trainlint.toml").write_text('ignore = ["TL505"]\n')
    assert codes(root, ".") == [("load.py", "TL801")]


def test_tool_table_with_inline_trainlint_is_honoured(root: Path) -> None:
    (root / "pyproject.toml").write_text('[tool]\ntrainlint = { ignore = ["TL505"] }\n')
    assert codes(root, ".") == [("load.py", "TL801")]


def test_nearest_configuration_applies_to_each_file(root: Path) -> None:
    (root / "pyproject.toml").write_text('[tool.trainlint]\nignore = ["TL801"]\n')
    sub = root / "sub"
    sub.mkdir()
    (sub / "pyproject.toml").write_text('[tool.trainlint]\nignore = ["TL505"]\n')
    (sub / "train.py").write_text(TL505)
    (sub / "load.py").write_text(TL801)
    assert codes(root, ".") == [("sub/load.py", "TL801"), ("train.py", "TL505")]
    # The nested settings also apply when the file is named directly.
    assert codes(root, "sub/train.py", "train.py") == [("train.py", "TL505")]


def test_extend_reads_a_base_and_overrides_it(root: Path) -> None:
    (root / "pyproject.toml").write_text('[tool.trainlint]\nignore = ["TL801"]\nexclude = ["legacy"]\n')
    sub = root / "sub"
    (sub / "legacy").mkdir(parents=True)
    (sub / "legacy" / "old.py").write_text(TL505)
    (sub / "load.py").write_text(TL801)
    (sub / "train.py").write_text(TL505)
    (sub / "trainlint.toml").write_text('extend = "../pyproject.toml"\nextend-select = ["TL901"]\n')
    # The base's ignore and exclude still apply (its patterns match anywhere below it).
    assert codes(root, "sub") == [("sub/train.py", "TL505")]
    (sub / "trainlint.toml").write_text('extend = "../pyproject.toml"\nselect = ["TL8"]\n')
    # select in the extending file replaces the base's selection, whose ignore came before.
    assert codes(root, "sub") == [("sub/load.py", "TL801")]


def test_extend_cycle_and_missing_base_are_errors(root: Path) -> None:
    (root / "trainlint.toml").write_text('extend = "trainlint.toml"\n')
    result = check(root, ".")
    assert result.exit_code == 2 and "forms a cycle" in result.output and "Traceback" not in result.output
    (root / "trainlint.toml").write_text('extend = "nope.toml"\n')
    assert "does not exist" in check(root, ".").output


def test_extend_select_from_cli_and_config(root: Path) -> None:
    (root / "train.py").write_text(TL505 + "x = 1  # noqa: TL101\n")
    assert ("train.py", "TL901") not in codes(root, ".")  # opt-in
    assert ("train.py", "TL901") in codes(root, ".", "--extend-select", "TL901")
    assert codes(root, ".", "--select", "TL8", "--extend-select", "TL505") == [("load.py", "TL801"), ("train.py", "TL505")]
    (root / "trainlint.toml").write_text('extend-select = ["TL9"]\n')
    assert ("train.py", "TL901") in codes(root, ".")


def test_exclude_replaces_defaults_and_extend_exclude_adds(root: Path) -> None:
    (root / "build").mkdir()
    (root / "build" / "gen.py").write_text(TL505)
    (root / "vendor").mkdir()
    (root / "vendor" / "lib.py").write_text(TL505)
    assert ("build/gen.py", "TL505") not in codes(root, ".")
    (root / "trainlint.toml").write_text('extend-exclude = ["vendor/"]\n')
    found = codes(root, ".")
    assert ("build/gen.py", "TL505") not in found and ("vendor/lib.py", "TL505") not in found
    (root / "trainlint.toml").write_text('exclude = ["vendor/"]\n')
    found = codes(root, ".")
    assert ("build/gen.py", "TL505") in found and ("vendor/lib.py", "TL505") not in found


def test_patterns_are_gitignore_style(root: Path) -> None:
    (root / "test_root.py").write_text(TL505)
    (root / "pkg").mkdir()
    (root / "pkg" / "test_deep.py").write_text(TL505)
    (root / "trainlint.toml").write_text('per-file-ignores = { "**/test_*.py" = ["TL505"] }\n')
    found = codes(root, ".")
    assert ("test_root.py", "TL505") not in found and ("pkg/test_deep.py", "TL505") not in found
    assert ("train.py", "TL505") in found


def test_gitignore_is_respected_unless_disabled(root: Path) -> None:
    (root / ".git").mkdir()
    (root / ".gitignore").write_text("generated/\n*.tmp.py\n!keep.tmp.py\nsecret.py\n")
    (root / "generated").mkdir()
    (root / "generated" / "out.py").write_text(TL505)
    (root / "scratch.tmp.py").write_text(TL505)
    (root / "keep.tmp.py").write_text(TL505)
    sub = root / "sub"
    sub.mkdir()
    (sub / ".gitignore").write_text("local.py\n")
    (sub / "local.py").write_text(TL505)
    files = sorted(path for path, _ in codes(root, "."))
    assert files == ["keep.tmp.py", "load.py", "train.py"]
    # Checking a sub-folder still honours the .gitignore files above it.
    (sub / "other.py").write_text(TL505)
    (sub / "secret.py").write_text(TL505)
    assert [path for path, _ in codes(root, "sub")] == ["sub/other.py"]
    (root / "trainlint.toml").write_text("respect-gitignore = false\n")
    assert len(codes(root, ".")) == 8


def test_target_version_decides_syntax(root: Path) -> None:
    (root / "typed.py").write_text("def first[T](items: list[T]) -> T:\n    return items[0]\n\ntype Pair = tuple[int, int]\n")
    (root / "quotes.py").write_text('name = "x"\nprint(f"{"a" + name}")\n')
    assert codes(root, "typed.py", "quotes.py") == []  # valid on the newest Python, whatever runs trainlint
    (root / "trainlint.toml").write_text('target-version = "py311"\n')
    result = check(root, "--format", "json", "typed.py", "quotes.py")
    found = {(d["path"], d["line"]): d["message"] for d in json.loads(result.output)["diagnostics"]}
    assert "type parameter list needs Python 3.12 (target-version is py311)" in found[("typed.py", 1)]
    assert "f-string nesting its own quotes needs Python 3.12" in found[("quotes.py", 2)]
    assert codes(root, "typed.py", "--target-version", "py312") == []
    (root / "trainlint.toml").write_text('target-version = "py27"\n')
    assert "target-version must be one of" in check(root, ".").output


def test_target_version_from_requires_python(root: Path) -> None:
    (root / "pyproject.toml").write_text('[project]\nrequires-python = ">=3.9"\n[tool.trainlint]\n')
    (root / "m.py").write_text("match command:\n    case _:\n        pass\n")
    assert codes(root, "m.py") == [("m.py", "TL000")]


def test_show_settings_and_show_files(root: Path) -> None:
    (root / "trainlint.toml").write_text('ignore = ["TL801"]\nextend-exclude = ["load.py"]\n')
    settings = check(root, "--show-settings", "train.py")
    assert settings.exit_code == 0
    assert "trainlint.toml" in settings.output and "TL505," in settings.output and "TL801," not in settings.output
    assert "target-version = py314" in settings.output
    files = check(root, "--show-files", ".")
    assert files.exit_code == 0 and files.output.split() == ["train.py"]


def test_config_key_value_overrides(root: Path) -> None:
    (root / "trainlint.toml").write_text('ignore = ["TL801"]\n')
    assert codes(root, ".", "--config", 'ignore = ["TL505"]') == [("load.py", "TL801")]
    assert codes(root, ".", "--config", 'select=["TL8"]', "--config", "ignore=[]") == [("load.py", "TL801")]
    bad = check(root, ".", "--config", "selct = 1")
    assert bad.exit_code == 2 and "unknown key(s) selct" in bad.output
    missing = check(root, ".", "--config", "nope.toml")
    assert missing.exit_code == 2 and "nope.toml: no such file" in missing.output


def test_config_file_option_applies_to_every_path(root: Path) -> None:
    (root / "custom.toml").write_text('ignore = ["TL505"]\n')
    (root / "sub").mkdir()
    (root / "sub" / "trainlint.toml").write_text("")
    (root / "sub" / "train.py").write_text(TL505)
    assert codes(root, "--config", "custom.toml", ".") == [("load.py", "TL801")]


def test_a_folder_named_explicitly_is_searched_even_when_excluded(root: Path) -> None:
    (root / ".git").mkdir()
    (root / ".gitignore").write_text(".venv/\n")
    package = root / ".venv" / "lib" / "site-packages" / "pkg"
    (package / "__pycache__").mkdir(parents=True)
    (package / "mod.py").write_text(TL505)
    (package / "__pycache__" / "mod.py").write_text(TL505)
    assert [path for path, _ in codes(root, ".")] == ["load.py", "train.py"]
    # Named on the command line, the folder is checked; default excludes still apply inside it.
    assert codes(root, ".venv/lib/site-packages/pkg") == [(".venv/lib/site-packages/pkg/mod.py", "TL505")]
