"""The Python API, for tools that embed trainlint (editors, notebooks, CI scripts).

    import trainlint

    for d in trainlint.check_paths(["train.py", "src/"]):
        print(d.path, d.line, d.code, d.message)
    findings = trainlint.check_source(code, path="train.py")

Both return :class:`~trainlint.diagnostics.Diagnostic` records (the objects of the JSON
output), sorted by path and position. Configuration is found as on the command line (the
nearest ``trainlint.toml``, ``.trainlint.toml`` or ``pyproject.toml``); ``select``,
``extend_select`` and ``ignore`` act like the CLI options, ``config`` like ``--config``.
A file trainlint cannot analyse is a ``TL000`` finding; bad configuration or a missing
path raises :class:`TrainlintError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from trainlint.config import ConfigError, Configuration, Selection, parse_override
from trainlint.diagnostics import Diagnostic, FileError, Severity, Span
from trainlint.files import MissingPathError
from trainlint.sources import Source


class TrainlintError(Exception):
    """Bad configuration, an unknown rule selector or a path that does not exist."""


def check_paths(
    paths: Iterable[str | Path],
    *,
    select: Iterable[str] | None = None,
    extend_select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    config: str | Path | None = None,
    jobs: int | None = 1,
    cache: bool = False,
) -> list[Diagnostic]:
    """Lint files and directories (recursively, with excludes and ``.gitignore``).

    ``jobs``: worker processes (``None``: every core); ``cache``: read and write
    ``.trainlint_cache/`` like the CLI (off by default: an embedding tool owns its state).
    """
    from trainlint.runner import RunOptions, run

    configuration = _configuration(select, extend_select, ignore, config)
    try:
        result = run([Path(p) for p in paths], configuration, RunOptions(jobs=jobs, cache=cache))
    except (ConfigError, MissingPathError) as exc:
        raise TrainlintError(str(exc)) from None
    return _with_errors(result.diagnostics, result.errors)


def check_source(
    source: str,
    path: str | Path = "<string>.py",
    *,
    select: Iterable[str] | None = None,
    extend_select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    config: str | Path | None = None,
) -> list[Diagnostic]:
    """Lint ``source`` as the content of ``path`` (which need not exist): the settings and
    per-file ignores of that path apply, and the file on disk is never read, though the
    local modules it imports are. A path ending in ``.ipynb`` reads ``source`` as a
    notebook's JSON."""
    from trainlint.linter import Linter, display_path

    configuration = _configuration(select, extend_select, ignore, config)
    target = Path(path)
    try:
        settings = configuration.settings_for(target)
    except ConfigError as exc:
        raise TrainlintError(str(exc)) from None
    linter, display = Linter(settings), display_path(target)
    if target.suffix == ".ipynb":
        result = linter.lint_bytes(target, source.encode("utf-8"), display)
    else:
        result = linter.lint_source(Source(target, source), display)
    return _with_errors(result.diagnostics, result.errors)


def _configuration(
    select: Iterable[str] | None,
    extend_select: Iterable[str] | None,
    ignore: Iterable[str] | None,
    config: str | Path | None,
) -> Configuration:
    cli = Selection(tuple(select or ()) or None, tuple(extend_select or ()), tuple(ignore or ()))
    try:
        if config is not None and Path(config).is_file():
            return Configuration.from_file(Path(config), cli=cli)
        overrides = parse_override(str(config)) if config is not None else {}
        configuration = Configuration(overrides, cli)
        configuration.default()  # validates the selectors now, not at the first file
        return configuration
    except ConfigError as exc:
        raise TrainlintError(str(exc)) from None


def _with_errors(diagnostics: list[Diagnostic], errors: list[FileError]) -> list[Diagnostic]:
    """Files the analyser failed on are reported as TL000 findings (the CLI's exit 2)."""
    failed = [
        Diagnostic("TL000", "parse-error", Severity.ERROR, error.message, "This is a bug in trainlint; please report it.",
                   error.path, Span(1, 1, 1, 1))
        for error in errors
    ]
    return sorted([*diagnostics, *failed], key=Diagnostic.sort_key)
