"""The content-hash cache (hits, invalidation by content, settings and imported modules,
atomic writes) and the process pool (same findings as a serial run)."""

from __future__ import annotations

import gc
import json
import shutil
import threading
from pathlib import Path

import pytest

from trainlint.cache import CACHE_DIR, Cache
from trainlint.config import Settings
from trainlint.linter import Linter, LintResult
from trainlint.runner import CHUNK_SIZE, MIN_CHUNK_SIZE, RunOptions, chunk_size, chunked, run

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

MODEL = """\
import torch.nn as nn
import torch.nn.functional as F

class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        return F.softmax(self.fc(x), dim=1)
"""

TRAIN = """\
import torch.nn as nn
from models import Classifier

model = Classifier()
criterion = nn.CrossEntropyLoss()
for images, labels in loader:
    loss = criterion(model(images), labels)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.trainlint]\n")
    (tmp_path / "models.py").write_text(MODEL)
    (tmp_path / "train.py").write_text(TRAIN)
    return tmp_path


class Counting:
    """Counts the files the linter really analyses (cache misses)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        original = Linter.lint_file_safely

        def counted(linter: Linter, path: Path, data: bytes | None = None) -> LintResult:
            self.paths.append(path.name)
            return original(linter, path, data)

        monkeypatch.setattr(Linter, "lint_file_safely", counted)


def lint(root: Path, select: tuple[str, ...] = (), **options: object) -> list[tuple[str, str, int]]:
    # In-process, so that Counting sees the files analysed.
    options.setdefault("isolated", False)
    result = run([Path("train.py")], Settings(select=select, root=root), RunOptions(jobs=1, **options))  # type: ignore[arg-type]
    return [(d.path, d.code, d.line) for d in result.diagnostics]


def test_second_run_is_served_from_the_cache(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = Counting(monkeypatch)
    first = lint(project)
    assert first == [("train.py", "TL101", 7)]
    assert lint(project) == first
    assert counting.paths == ["train.py"]
    assert (project / CACHE_DIR / ".gitignore").read_text().endswith("*\n")


def test_content_change_invalidates(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lint(project)
    counting = Counting(monkeypatch)
    (project / "train.py").write_text(TRAIN + "# touched\n")
    assert lint(project) == [("train.py", "TL101", 7)]
    assert counting.paths == ["train.py"]


def test_settings_change_invalidates(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert lint(project) == [("train.py", "TL101", 7)]
    counting = Counting(monkeypatch)
    assert lint(project, select=("TL2",)) == []
    assert counting.paths == ["train.py"]


def test_change_in_an_imported_module_invalidates(project: Path) -> None:
    assert lint(project) == [("train.py", "TL101", 7)]
    (project / "models.py").write_text(MODEL.replace("F.softmax(self.fc(x), dim=1)", "self.fc(x)"))
    assert lint(project) == []


def test_touching_an_imported_module_keeps_the_entry(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lint(project)
    (project / "models.py").write_text(MODEL)  # same content, new mtime
    counting = Counting(monkeypatch)
    assert lint(project) == [("train.py", "TL101", 7)]
    assert counting.paths == []


def test_no_cache_writes_nothing(project: Path) -> None:
    lint(project, cache=False)
    assert not (project / CACHE_DIR).exists()


def test_concurrent_writers_leave_whole_entries(project: Path) -> None:
    settings = Settings(root=project)
    result = Linter(settings).lint_file(project / "train.py")
    cache = Cache(project, settings)
    content = (project / "train.py").read_bytes()
    writers = [threading.Thread(target=cache.put, args=("train.py", content, result, {})) for _ in range(8)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    entries = list((project / CACHE_DIR).rglob("*.json"))
    assert len(entries) == 1 and json.loads(entries[0].read_text())["diagnostics"][0]["code"] == "TL101"
    assert not list((project / CACHE_DIR).rglob(".tmp-*"))
    cached = cache.get("train.py", content)
    assert cached is not None and cached.diagnostics == result.diagnostics


def test_parallel_run_matches_serial_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(FIXTURES, tmp_path / "fixtures")
    monkeypatch.chdir(tmp_path)
    settings = Settings(root=tmp_path)
    serial = run([Path("fixtures")], settings, RunOptions(jobs=1, cache=False))
    parallel = run([Path("fixtures")], settings, RunOptions(jobs=2, cache=False))
    assert serial.files == parallel.files > 10
    assert serial.diagnostics == parallel.diagnostics and serial.diagnostics


def test_chunks_keep_directories_together_and_stay_bounded() -> None:
    files = [Path(f"a/{i:03}.py") for i in range(CHUNK_SIZE + 3)] + [Path("b/x.py"), Path("b/y.py"), Path("c/z.py")]
    chunks = list(chunked(files, CHUNK_SIZE))
    assert [len(c) for c in chunks] == [CHUNK_SIZE, 6]
    assert sum(chunks, []) == files


def test_chunk_size_spreads_small_runs_and_caps_large_ones() -> None:
    assert chunk_size(10) == chunk_size(100) == MIN_CHUNK_SIZE
    assert chunk_size(300) == 19  # 300 files in 16 chunks
    assert chunk_size(100_000) == CHUNK_SIZE


def test_change_in_a_transitively_imported_module_invalidates(project: Path) -> None:
    """``other.py`` is linted first and leaves the evaluation of ``models.py`` memoized;
    ``train.py``'s entry must still depend on ``layers.py`` through ``models.py``."""
    (project / "layers.py").write_text("import torch.nn.functional as F\n\ndef head(x):\n    return F.softmax(x, dim=1)\n")
    (project / "models.py").write_text(MODEL.replace("F.softmax(self.fc(x), dim=1)", "head(self.fc(x))") + "from layers import head\n")
    (project / "other.py").write_text(TRAIN)
    settings = Settings(root=project)
    first = run([Path("other.py"), Path("train.py")], settings, RunOptions(jobs=1))
    assert [(d.path, d.code) for d in first.diagnostics] == [("other.py", "TL101"), ("train.py", "TL101")]
    (project / "layers.py").write_text("def head(x):\n    return x\n")
    assert run([Path("train.py")], settings, RunOptions(jobs=1)).diagnostics == []


def test_in_process_run_gives_the_collector_back(tmp_path: Path) -> None:
    """Workers tune the garbage collector for the run; an in-process run must not leave the
    caller's process (an editor integration, a test session) frozen or retuned."""
    (tmp_path / "train.py").write_text(TRAIN)
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    run([tmp_path], Settings(root=tmp_path), RunOptions(jobs=1, cache=False, isolated=False))
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == frozen
