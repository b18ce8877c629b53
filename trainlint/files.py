"""Which files a run looks at: explicit paths as given, directories searched recursively.

Directories are searched like ruff does: configured and default excludes, and
``.gitignore`` files (with ``respect-gitignore``, the default) prune the walk, each folder
under the settings of its nearest configuration. Only regular files are ever read: a FIFO
named ``x.py`` would block the run forever. Symbolic links to folders are not followed
(no cycle can form); links to files are linted, and a broken or looping link is kept so
that the linter reports it as a TL000 under the link's own name.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainlint.config import Configuration, Patterns, Settings

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

LINTABLE_SUFFIXES = (".py", ".pyi", ".ipynb")


class MissingPathError(Exception):
    """A path given on the command line does not exist, or the paths hold no file to check."""


def discover(
    paths: Iterable[Path], configuration: Configuration | Settings, force_exclude: bool = False
) -> list[Path]:
    """Files to lint, sorted and unique. Explicit files are linted unless excluded with
    ``force_exclude`` (for pre-commit, which names every changed file); files found inside
    directories are filtered by excludes and ``.gitignore``.

    Raises :class:`MissingPathError` for a path that does not exist, and when the paths
    hold no file at all (never a silent "all checks passed")."""
    if isinstance(configuration, Settings):
        configuration = Configuration.of(configuration)
    found: dict[Path, None] = {}
    targets = list(paths)
    dropped = 0
    for path in targets:
        if not os.path.lexists(path):
            raise MissingPathError(f"{path}: no such file or directory")
        if _is_directory(path):
            for file in _walk(path, configuration):
                found[file] = None
        else:
            settings = configuration.settings_for(path)
            if (force_exclude or settings.force_exclude) and settings.is_excluded(path):
                dropped += 1
            else:
                found[path] = None
    if not found and dropped < len(targets):
        names = ", ".join(str(path) for path in targets)
        raise MissingPathError(f"no Python files or notebooks to check in {names}")
    return sorted(found)


def _is_directory(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except OSError:  # a broken or looping link: linted, and reported as TL000
        return False


@dataclass(frozen=True)
class _Ignore:
    """The patterns of one ``.gitignore`` (or ``.git/info/exclude``), relative to ``base``."""

    base: Path
    spec: GitIgnoreSpec

    def verdict(self, absolute: Path, is_dir: bool) -> bool | None:
        """True: ignored, False: re-included by a ``!pattern``, None: not mentioned."""
        relative = absolute.relative_to(self.base).as_posix() + ("/" if is_dir else "")
        return self.spec.check_file(relative).include


class _Walk:
    """One folder named on the command line, searched. A folder named explicitly is
    searched even when a pattern excludes it (``.venv/lib/.../torch``); the patterns that
    exclude it then apply from it downwards, as if it were their folder."""

    def __init__(self, root: Path, configuration: Configuration) -> None:
        self.root = root.resolve()
        self.configuration = configuration
        self._excludes: dict[int, tuple[Patterns, ...]] = {}

    def ignores_above(self) -> list[_Ignore]:
        ignores = _ancestor_ignores(self.root) if self.configuration.settings_for(self.root).respect_gitignore else []
        return [_Ignore(self.root, i.spec) if i.verdict(self.root, True) else i for i in ignores]

    def excludes(self, settings: Settings) -> tuple[Patterns, ...]:
        found = self._excludes.get(id(settings))
        if found is None:
            found = tuple(
                Patterns(str(self.root), p.patterns) if p.matches(self.root, True) else p for p in settings.excludes
            )
            self._excludes[id(settings)] = found
        return found


def _walk(root: Path, configuration: Configuration) -> Iterator[Path]:
    walk = _Walk(root, configuration)
    yield from _walk_directory(root, walk.root, walk, walk.ignores_above())


def _walk_directory(directory: Path, absolute: Path, walk: _Walk, ignores: list[_Ignore]) -> Iterator[Path]:
    """Files under ``directory`` (as the user named it; ``absolute`` is the same folder)."""
    settings = walk.configuration.settings_for(absolute)
    excludes = walk.excludes(settings)
    if settings.respect_gitignore:
        own = _read_ignore(absolute / ".gitignore", absolute)
        ignores = [*ignores, own] if own is not None else ignores
    try:
        with os.scandir(absolute) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError:
        return  # unreadable folder: nothing to lint in it
    subdirectories = []
    for entry in entries:
        kind = _kind(entry)
        if kind is None:
            continue
        is_dir, full = kind == "dir", absolute / entry.name
        if any(p.matches(full, is_dir) for p in excludes) or (
            settings.respect_gitignore and _ignored(full, is_dir, ignores)
        ):
            continue
        if is_dir:
            subdirectories.append(entry.name)
        elif entry.name.endswith(LINTABLE_SUFFIXES):
            yield directory / entry.name
    for name in subdirectories:
        yield from _walk_directory(directory / name, absolute / name, walk, ignores)


def _kind(entry: os.DirEntry[str]) -> str | None:
    """"dir" for a real folder (links to folders are not followed), "file" for a regular
    file or a link that cannot be followed, ``None`` for anything else (FIFOs, sockets,
    devices: reading them could block)."""
    try:
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        if entry.is_file():
            return "file"
        if entry.is_symlink():
            os.stat(entry.path)  # raises for a broken or looping link
            return None  # a link to a folder or a FIFO
    except OSError:
        return "file"
    return None


def _ignored(path: Path, is_dir: bool, ignores: list[_Ignore]) -> bool:
    # The deepest .gitignore that mentions the path decides, as in git.
    for ignore in reversed(ignores):
        verdict = ignore.verdict(path, is_dir)
        if verdict is not None:
            return verdict
    return False


def _ancestor_ignores(root: Path) -> list[_Ignore]:
    """The ignore files that apply to ``root`` (absolute) from above: ``.git/info/exclude``
    and every ``.gitignore`` above it up to the repository's top folder (the one holding
    ``.git``). Outside a repository only the ``.gitignore`` files inside ``root`` count."""
    top = next((d for d in (root, *root.parents) if (d / ".git").exists()), None)
    if top is None:
        return []
    ignores = [_read_ignore(top / ".git" / "info" / "exclude", top)]
    above = [d for d in root.parents if d == top or top in d.parents]
    ignores += [_read_ignore(d / ".gitignore", d) for d in reversed(above)]
    return [ignore for ignore in ignores if ignore is not None]


def _read_ignore(path: Path, base: Path) -> _Ignore | None:
    try:
        if not path.is_file():
            return None
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    from pathspec import GitIgnoreSpec

    return _Ignore(base, GitIgnoreSpec.from_lines(lines))
