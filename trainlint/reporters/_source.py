"""Source lines of findings, for formats that quote or fingerprint them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from trainlint.diagnostics import Diagnostic
from trainlint.sources import Source, SourceError, read_source, split_lines


class SourceLines:
    """Reads each file once (or takes its text from ``sources``: standard input); maps a
    notebook's (cell, line) back to the line of the joined cells."""

    def __init__(self, sources: Mapping[str, Source] | None = None) -> None:
        self._given = dict(sources or {})
        self._files: dict[str, tuple[list[str], dict[int, int]]] = {}

    def line(self, diagnostic: Diagnostic, line: int | None = None) -> str:
        """The text of ``line`` (default: the finding's first line), counted like the
        finding's (within its cell for notebooks); empty when unknown."""
        lines, cell_starts = self._load(diagnostic.path)
        number = diagnostic.line if line is None else line
        index = number - 1 + (cell_starts.get(diagnostic.cell, 1) - 1 if diagnostic.cell else 0)
        return lines[index] if 0 <= index < len(lines) else ""

    def _load(self, path: str) -> tuple[list[str], dict[int, int]]:
        if path not in self._files:
            try:
                source = self._given[path] if path in self._given else read_source(Path(path))
                self._files[path] = (split_lines(source.text), dict(source.cells))
            except (OSError, SourceError):
                self._files[path] = ([], {})
        return self._files[path]
