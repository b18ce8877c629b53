"""Running a check over many files: cache, process pool, progress, and writing fixes.

Files are split into chunks of neighbouring files (same or adjacent directories), and each
chunk is linted by a fresh :class:`Linter`: sibling imports are parsed once per chunk, and
memory stays bounded by the chunk rather than growing with the repository. Chunks do not
depend on the number of jobs, so ``--jobs 1`` and ``--jobs 8`` report the same findings.
"""

from __future__ import annotations

import difflib
import gc
import os
import tokenize
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from trainlint.cache import Cache
from trainlint.config import Configuration, Settings
from trainlint.diagnostics import Diagnostic, FixedFile, LintResult
from trainlint.files import discover
from trainlint.sources import display_path, read_regular, write_atomically

# The linter (libcst, the rules), the process pool and rich load only when a run needs
# them: a run whose files are all cached imports none of them.
if TYPE_CHECKING:
    from trainlint.fixes import FixSafety
    from trainlint.linter import Linter

# Files per chunk at most; matches the sibling scan of the project model (analysis/project.py).
CHUNK_SIZE = 64
# Smaller runs are cut into about this many chunks (of at least MIN_CHUNK_SIZE files), so
# that a hundred files still keep every core busy until the end.
TARGET_CHUNKS = 16
MIN_CHUNK_SIZE = 8
# Below this many files a progress bar is noise.
PROGRESS_MIN_FILES = 200
# Allocations between young-generation collections. Parsing allocates millions of acyclic
# nodes; at CPython's default (700) the collector runs thousands of times per file for no
# garbage (the same setting mypy uses for the same reason).
GC_THRESHOLD = (200_000, 30, 30)


@dataclass(frozen=True)
class RunOptions:
    jobs: int | None = None  # None: every core
    cache: bool = True
    fixes: frozenset[FixSafety] = frozenset()
    progress: bool = False
    force_exclude: bool = False


def run(paths: Iterable[Path], settings: Settings | Configuration, options: RunOptions) -> LintResult:
    configuration = Configuration.of(settings) if isinstance(settings, Settings) else settings
    files = discover(paths, configuration, options.force_exclude)
    size = chunk_size(len(files))
    # Each file is checked under the settings of its nearest configuration.
    chunks = [Job(group, chunk) for group, members in _by_settings(files, configuration) for chunk in chunked(members, size)]
    result = LintResult()
    with _progress(options.progress and len(files) >= PROGRESS_MIN_FILES, len(files)) as advance:
        for chunk_result in _results(chunks, options):
            result.extend(chunk_result)
            advance(chunk_result.files)
    result.diagnostics.sort(key=Diagnostic.sort_key)
    result.errors.sort(key=lambda error: error.path)
    result.fixed.sort(key=lambda fixed: fixed.display)
    return result


@dataclass(frozen=True)
class Job:
    """Files linted together by one worker, under one set of settings."""

    settings: Settings
    files: list[Path]


def _by_settings(files: list[Path], configuration: Configuration) -> list[tuple[Settings, list[Path]]]:
    groups: dict[int, tuple[Settings, list[Path]]] = {}
    for file in files:
        settings = configuration.settings_for(file)
        groups.setdefault(id(settings), (settings, []))[1].append(file)
    return list(groups.values())


def chunk_size(files: int) -> int:
    """Depends on the number of files only, never on ``--jobs``: same chunks, same findings."""
    return min(CHUNK_SIZE, max(MIN_CHUNK_SIZE, -(-files // TARGET_CHUNKS)))


def chunked(files: list[Path], size: int) -> Iterator[list[Path]]:
    """Consecutive (sorted) files, whole directories together where they fit."""
    chunk: list[Path] = []
    for group in _by_directory(files):
        if chunk and len(chunk) + len(group) > size:
            yield chunk
            chunk = []
        for start in range(0, len(group), size):
            part = group[start : start + size]
            if len(part) == size:
                yield part
            else:
                chunk.extend(part)
    if chunk:
        yield chunk


def _by_directory(files: list[Path]) -> Iterator[list[Path]]:
    group: list[Path] = []
    for file in files:
        if group and file.parent != group[0].parent:
            yield group
            group = []
        group.append(file)
    if group:
        yield group


def _results(chunks: list[Job], options: RunOptions) -> Iterator[LintResult]:
    jobs = min(options.jobs or os.cpu_count() or 1, len(chunks))
    if jobs <= 1:
        _set_options(options)
        with _collector_tuned():
            yield from map(_lint_chunk, chunks)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(options,)) as pool:
        # Largest first, so that no big chunk starts last while the other workers idle; the
        # caller sorts everything it reports, so the order results arrive in is free.
        yield from pool.map(_lint_chunk, sorted(chunks, key=_chunk_bytes, reverse=True))


def _chunk_bytes(chunk: Job) -> int:
    total = 0
    for path in chunk.files:
        try:
            total += path.stat().st_size
        except OSError:
            pass  # reported when the file is linted
    return total


# -- worker side ------------------------------------------------------------------------------

_options = RunOptions()


def _init_worker(options: RunOptions) -> None:
    """Pool initializer: the process lives for this run only, so the collector stays tuned."""
    _set_options(options)
    _tune_collector()


def _set_options(options: RunOptions) -> None:
    global _options
    _options = options


def _tune_collector() -> tuple[int, int, int]:
    """Keep what is alive now (the imported modules) out of every collection, and collect
    less often; returns the previous thresholds."""
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    return previous


@contextmanager
def _collector_tuned() -> Iterator[None]:
    """In-process runs give the caller's process its collector back afterwards (a caller
    that froze objects itself keeps them frozen)."""
    caller_froze = gc.get_freeze_count() > 0
    previous = _tune_collector()
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        if not caller_froze:
            gc.unfreeze()


class _Linters:
    """The chunk's linter, built on first use (a fully cached chunk needs none)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._linter: Linter | None = None

    def get(self) -> Linter:
        if self._linter is None:
            from trainlint.linter import Linter

            self._linter = Linter(self.settings, _options.fixes)
        return self._linter


def _lint_chunk(job: Job) -> LintResult:
    linters = _Linters(job.settings)
    cache = Cache(job.settings.root, job.settings) if _options.cache else None
    result = LintResult()
    for path in job.files:
        result.extend(_lint_one(linters, cache, path))
    return result


def _lint_one(linters: _Linters, cache: Cache | None, path: Path) -> LintResult:
    content = _read_bytes(path)
    if cache is None or content is None:
        return linters.get().lint_file_safely(path)
    display = display_path(path)
    cached = cache.get(display, content)
    # A cached result is good unless it holds a finding that this run should fix.
    wanted = {getattr(safety, "value", safety) for safety in _options.fixes}
    if cached is not None and not any(getattr(d.fix, "value", d.fix) in wanted for d in cached.diagnostics):
        return cached
    linter = linters.get()
    accessed = linter.project.start_tracking()
    result = linter.lint_file_safely(path)
    # Analyser crashes are cached too: the same input crashes the same way, and re-running
    # them on every warm run would cost as much as a cold one.
    if not result.fixed:
        cache.put(display, content, result, linter.project.dependencies(accessed) - {path.resolve()})
    return result


def _read_bytes(path: Path) -> bytes | None:
    try:
        return read_regular(path)  # never blocks on a FIFO
    except OSError:
        return None  # the linter reports the unreadable file


# -- progress ---------------------------------------------------------------------------------


@contextmanager
def _progress(show: bool, total: int) -> Iterator[Callable[[int], None]]:
    """``advance(n)`` for a transient rich progress bar on stderr, or a no-op."""
    if not show:
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("trainlint", total=total)
        yield lambda done: bar.advance(task, done)


# -- fixes ------------------------------------------------------------------------------------


def write_fixes(fixed: Iterable[FixedFile]) -> list[tuple[Path, str]]:
    """Write fixed files back in their own encoding (BOM and line endings are kept: fixes
    only replace nodes, and the text was decoded without newline translation). Returns the
    files that could not be written, with the reason (a read-only folder)."""
    failures = []
    for file in fixed:
        try:
            write_atomically(file.path, file.fixed.encode(_encoding(file.path)))
        except OSError as exc:
            failures.append((file.path, exc.strerror or str(exc)))
    return failures


def _encoding(path: Path) -> str:
    with path.open("rb") as stream:
        encoding, _ = tokenize.detect_encoding(stream.readline)
    return encoding


def render_diff(fixed: Iterable[FixedFile], stream: TextIO) -> None:
    for file in fixed:
        stream.writelines(
            difflib.unified_diff(
                file.original.splitlines(keepends=True),
                file.fixed.splitlines(keepends=True),
                fromfile=f"a/{file.display}",
                tofile=f"b/{file.display}",
            )
        )
