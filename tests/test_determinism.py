"""The same files give the same findings whatever the number of jobs, the chunking, the
order files are named in and the state of the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from trainlint import runner
from trainlint.config import Settings
from trainlint.runner import RunOptions, run

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# Projects with cross-file flows: helpers, evaluation in another file, AMP engines.
CORPUS = ("classifier_project", "eval_modes_project", "amp_project", "healthy_project")


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.trainlint]\n")
    for name in CORPUS:
        shutil.copytree(FIXTURES / name, tmp_path / name)
    return sorted(tmp_path.rglob("*.py"))


def findings(files: list[Path], **options: object) -> list[tuple[str, str, int, int, str]]:
    result = run(files, Settings(root=Path.cwd()), RunOptions(**options))  # type: ignore[arg-type]
    assert not result.errors, result.errors
    return [(d.path, d.code, d.line, d.column, d.message) for d in result.diagnostics]


def test_jobs_chunks_order_and_cache_do_not_change_findings(corpus: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    reference = findings(corpus, jobs=1, cache=False)
    assert reference, "the corpus must have findings for the comparison to mean anything"
    assert findings(corpus, jobs=2, cache=False) == reference
    assert findings(list(reversed(corpus)), jobs=1, cache=False) == reference
    with monkeypatch.context() as patch:  # one file per chunk: a fresh project model each
        patch.setattr(runner, "CHUNK_SIZE", 1)
        patch.setattr(runner, "MIN_CHUNK_SIZE", 1)
        assert findings(corpus, jobs=1, cache=False) == reference
    assert findings(corpus, jobs=1, cache=True) == reference  # cold cache
    assert findings(corpus, jobs=1, cache=True) == reference  # warm cache
