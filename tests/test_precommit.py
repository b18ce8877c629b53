"""The pre-commit hook, run by the real ``pre-commit try-repo`` against temporary repos.

pre-commit installs this checkout into its own virtualenv with pip, through the machine's
pip configuration (index or wheel folders; no network is needed when they are local). Each
``try-repo`` builds that environment in a throwaway store (about 15 s), so the module is
marked slow.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

yaml = pytest.importorskip("yaml")  # comes with pre-commit

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("pre_commit") is None, reason="pre-commit is not installed"),
]

BUGGY = "import torch.nn.functional as F\n\nloss = F.cross_entropy(F.softmax(logits, dim=1), y)\n"
CLEAN = "import torch.nn.functional as F\n\nloss = F.cross_entropy(logits, y)\n"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """pre-commit's own home (its database), kept out of the user's ~/.cache."""
    return tmp_path / "pre-commit-home"


def _repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    for name, text in files.items():
        (path / name).write_text(text)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    return path


def _try_repo(repo: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    command = [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), "trainlint", "--all-files"]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)


def test_hook_fails_on_a_buggy_file_and_passes_on_a_clean_one(tmp_path: Path, home: Path) -> None:
    buggy = _try_repo(_repo(tmp_path / "buggy", {"train.py": BUGGY}), home)
    assert buggy.returncode == 1, buggy.stdout + buggy.stderr
    assert "TL101" in buggy.stdout
    clean = _try_repo(_repo(tmp_path / "clean", {"train.py": CLEAN}), home)
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_hook_succeeds_without_files(tmp_path: Path, home: Path) -> None:
    result = _try_repo(_repo(tmp_path / "empty", {"README.md": "nothing to lint\n"}), home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no files to check" in result.stdout


def test_hook_installs_no_torch() -> None:
    """pre-commit installs the package's base dependencies plus the hook's
    ``additional_dependencies``; torch must be in neither (it is the ``probe`` extra)."""
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *(d for hook in hooks for d in hook.get("additional_dependencies", []))]
    assert requirements and not [r for r in requirements if r.lower().startswith("torch")]
    assert {tuple(hook["types_or"]) for hook in hooks} == {("python", "jupyter")}
