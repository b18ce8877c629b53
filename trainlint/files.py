"""Which files a run looks at: explicit paths as given, directories searched recursively."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from trainlint.config import Settings

LINTABLE_SUFFIXES = (".py", ".ipynb")


class MissingPathError(Exception):
    """A path given on the command line does not exist."""


def discover(paths: Iterable[Path], settings: Settings, force_exclude: bool = False) -> list[Path]:
    """Files to lint, sorted and unique. Explicit files are linted unless ``force_exclude``
    (for pre-commit, which names every changed file); files found inside directories are
    filtered by the default and configured excludes."""
    found: dict[Path, None] = {}
    for path in paths:
        if not path.exists():
            raise MissingPathError(f"{path}: no such file or directory")
        if path.is_file():
            if not (force_exclude and settings.is_excluded(path)):
                found[path] = None
        else:
            for file in _walk(path, settings):
                found[file] = None
    return sorted(found)


def _walk(root: Path, settings: Settings) -> Iterator[Path]:
    for directory, subdirs, filenames in os.walk(root):
        base = Path(directory)
        subdirs[:] = sorted(d for d in subdirs if not settings.is_excluded(base / d))
        for name in sorted(filenames):
            file = base / name
            if name.endswith(LINTABLE_SUFFIXES) and not settings.is_excluded(file):
                yield file
