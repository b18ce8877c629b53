"""Running a check over many files: cache, process pool, progress, and writing fixes.

Files are split into chunks of neighbouring files (same or adjacent directories), and each
chunk is linted by a fresh :class:`Linter`: sibling imports are parsed once per chunk, and
memory stays bounded by the chunk rather than growing with the repository. Chunks do not
depend on the number of jobs, so ``--jobs 1`` and ``--jobs 8`` report the same findings.

Chunks are linted in worker processes, even with one job: the parser is native code, and a
crash there (a segfault) must cost only the file that caused it, never the run. Each worker
notes in a journal file which file it is linting; when a worker dies, the files that were
in progress are set aside, the unfinished chunks run again in a fresh pool without them,
and each of them then runs alone, so that only a file that crashes a worker by itself is
reported as such, and every other file keeps its findings.
"""

from __future__ import annotations

import difflib
import faulthandler
import gc
import os
import tempfile
import tokenize
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TextIO

from trainlint.cache import Cache, settings_digest
from trainlint.config import Configuration, Settings
from trainlint.diagnostics import Diagnostic, FileError, FixedFile, LintResult
from trainlint.files import discover
from trainlint.sources import display_path, read_regular, write_atomically

# The linter (libcst, the rules), the process pool and rich load only when a run needs
# them: a run whose files are all cached imports none of them.
if TYPE_CHECKING:
    from trainlint.fixing import FixSafety
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
    # False: lint in this process when one job is enough (no process start-up, but a crash
    # of the native parser then takes the caller down).
    isolated: bool = True


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
    if options.cache:
        chunks = yield from _cached_results(chunks, options)
    if not chunks:
        return
    jobs = min(options.jobs or os.cpu_count() or 1, len(chunks))
    if jobs <= 1 and not options.isolated:
        _set_options(options)
        with _collector_tuned():
            yield from map(_lint_chunk, chunks)
        return
    yield from _isolated(chunks, options, jobs)


def _cached_results(chunks: list[Job], options: RunOptions) -> Generator[LintResult, None, list[Job]]:
    """Yield the cached results (served here: a warm run starts no worker process); return
    the chunks of the files left to lint."""
    misses = []
    for chunk in chunks:
        cache, left = _cache_for(chunk.settings), []
        for path in chunk.files:
            cached = _cached(cache, path, options.fixes)
            if cached is None:
                left.append(path)
            else:
                yield cached
        if left:
            misses.append(Job(chunk.settings, left))
    return misses


def _isolated(chunks: list[Job], options: RunOptions, jobs: int) -> Iterator[LintResult]:
    """Lint in worker processes; a worker's crash costs only the file that caused it."""
    # Largest first, so that no big chunk starts last while the other workers idle; the
    # caller sorts everything it reports, so the order results arrive in is free.
    pending = sorted(chunks, key=_chunk_bytes, reverse=True)
    suspects: list[Job] = []
    while pending:
        interruption = yield from _pooled(pending, options, jobs)
        if interruption is None:
            break
        # A worker that reported its crash names the file that caused it; without that
        # report (killed, out of memory), every file in progress is suspect; without any
        # file in progress, every file of an unfinished chunk is.
        crashed = {path: why for path, why in interruption.in_progress.items() if why}
        for path, why in crashed.items():
            yield _crash_result(path, why)
        set_aside = set(crashed or interruption.in_progress) or {p for c in interruption.unfinished for p in c.files}
        suspects.extend(
            Job(chunk.settings, [path]) for chunk in interruption.unfinished for path in chunk.files if path in set_aside and path not in crashed
        )
        pending = [Job(c.settings, left) for c in interruption.unfinished if (left := [p for p in c.files if p not in set_aside])]
    for suspect in suspects:
        # Alone in a fresh worker: only a file that crashes it by itself is blamed.
        interruption = yield from _pooled([suspect], options, 1)
        if interruption is not None:
            path = suspect.files[0]
            yield _crash_result(path, interruption.in_progress.get(path, ""))


@dataclass(frozen=True)
class _Interruption:
    """What a pool left undone when a worker died."""

    unfinished: list[Job]  # chunks whose results never came
    in_progress: dict[Path, str]  # files that dead workers were linting -> how the worker died, if it said


def _pooled(chunks: list[Job], options: RunOptions, jobs: int) -> Generator[LintResult, None, _Interruption | None]:
    """Lint ``chunks`` in a pool of ``jobs`` workers, yielding each chunk's result; returns
    what was left undone if a worker died."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    with tempfile.TemporaryDirectory(prefix="trainlint-journal-") as journal:
        failed: set[int] = set()
        with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(options, journal)) as pool:
            futures = {pool.submit(_lint_chunk, chunk): index for index, chunk in enumerate(chunks)}
            for future in as_completed(futures):
                try:
                    result = future.result()
                except BrokenProcessPool:
                    failed.add(futures[future])
                    continue
                yield result
        if not failed:
            return None
        unfinished = [chunk for index, chunk in enumerate(chunks) if index in failed]
        return _Interruption(unfinished, _in_progress(Path(journal)))


def _in_progress(journal: Path) -> dict[Path, str]:
    """The files the workers of a pool were linting when it broke, each with the first line
    of its worker's crash report (empty if it wrote none)."""
    found: dict[Path, str] = {}
    for note in journal.glob("[0-9]*[0-9]"):
        current = note.read_bytes()
        if current:
            crash = note.with_suffix(".crash")
            report = crash.read_text(errors="replace").strip().splitlines() if crash.exists() else []
            found[Path(os.fsdecode(current))] = report[0] if report else ""
    return found


def _crash_result(path: Path, why: str) -> LintResult:
    how = why or "its worker process was killed, perhaps for lack of memory"
    message = f"trainlint crashed while analysing this file ({how}); the file was skipped, please report it"
    return LintResult(errors=[FileError(display_path(path), message)], files=1)


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
# One cache per settings, run and process: files that entries depend on are hashed once.
_caches: dict[tuple[Path, str], Cache] = {}
# In a worker: the journal file naming the file being linted, and the crash report file.
_journal: BinaryIO | None = None
_crash_report: TextIO | None = None


def _init_worker(options: RunOptions, journal: str) -> None:
    """Pool initializer: the process lives for this run only, so the collector stays tuned."""
    global _journal, _crash_report
    _set_options(options)
    _tune_collector()
    _journal = open(os.path.join(journal, str(os.getpid())), "wb", buffering=0)  # noqa: SIM115 - lives with the process
    _crash_report = open(os.path.join(journal, f"{os.getpid()}.crash"), "w")  # noqa: SIM115 - lives with the process
    faulthandler.enable(_crash_report)


def _note(path: Path | None) -> None:
    """Journal the file being linted (``None``: none): it is what a crash is blamed on."""
    if _journal is not None:
        _journal.seek(0)
        _journal.truncate()
        if path is not None:
            _journal.write(os.fsencode(path))


def _set_options(options: RunOptions) -> None:
    global _options
    _options = options
    _caches.clear()


def _cache_for(settings: Settings) -> Cache:
    # Jobs reach a worker as copies: the same settings arrive as different objects.
    key = (settings.root, settings_digest(settings))
    cache = _caches.get(key)
    if cache is None:
        cache = _caches[key] = Cache(settings.root, settings)
    return cache


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


def _lint_chunk(job: Job) -> LintResult:
    from trainlint.linter import Linter

    linter = Linter(job.settings, _options.fixes)
    cache = _cache_for(job.settings) if _options.cache else None
    result = LintResult()
    for path in job.files:
        _note(path)
        result.extend(_lint_one(linter, cache, path))
    _note(None)
    return result


def _cached(cache: Cache, path: Path, fixes: frozenset[FixSafety]) -> LintResult | None:
    content = _read_bytes(path)
    cached = cache.get(display_path(path), content) if content is not None else None
    # A cached result is good unless it holds a finding that this run should fix.
    wanted = {getattr(safety, "value", safety) for safety in fixes}
    if cached is None or any(getattr(d.fix, "value", d.fix) in wanted for d in cached.diagnostics):
        return None
    return cached


def _lint_one(linter: Linter, cache: Cache | None, path: Path) -> LintResult:
    """Lint ``path`` (not in the cache: the caller looked) and cache the result."""
    content = _read_bytes(path)
    if content is None:
        return linter.lint_file_safely(path)  # reports the unreadable file
    if cache is None:
        return linter.lint_file_safely(path, content)
    display = display_path(path)
    accessed = linter.project.start_tracking()
    # The linter analyses the very bytes the entry is keyed by.
    result = linter.lint_file_safely(path, content)
    dependencies = linter.project.dependencies(accessed)
    # Analyser crashes are cached too: the same input crashes the same way, and re-running
    # them on every warm run would cost as much as a cold one. Nothing is cached when a
    # file changed while the analysis read it.
    if not result.fixed and dependencies is not None:
        dependencies.pop(path.resolve(), None)
        cache.put(display, content, result, dependencies)
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
