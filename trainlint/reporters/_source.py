"""Source lines of findings, for formats that quote or fingerprint them."""

from __future__ import annotations

from pathlib import Path

from trainlint.diagnostics import Diagnostic
from trainlint.sources import SourceError, read_source


class SourceLines:
    """Reads each file once; maps notebook (cell, line) back to the cell's text."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[list[str], dict[int, int]]] = {}

    def line(self, diagnostic: Diagnostic) -> str:
        lines, cell_starts = self._load(diagnostic.path)
        index = diagnostic.line - 1 + (cell_starts.get(diagnostic.cell, 1) - 1 if diagnostic.cell else 0)
        return lines[index] if 0 <= index < len(lines) else ""

    def _load(self, path: str) -> tuple[list[str], dict[int, int]]:
        if path not in self._files:
            try:
                source = read_source(Path(path))
                self._files[path] = (source.text.splitlines(), dict(source.cells))
            except (OSError, SourceError):
                self._files[path] = ([], {})
        return self._files[path]
