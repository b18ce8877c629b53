"""What the language server checks, with no LSP in it: open documents, the project model
kept warm between edits, and the fixes and ``# noqa`` edits offered as code actions.

Warm model: each open document's parsed and indexed module is kept until its text
changes, and files on disk are parsed once per content (``analysis/project.py``'s tree
cache), so a check after an edit re-parses only the edited buffer. Each check runs the
rules with a fresh evaluator over those modules (a memo must never outlive an edit), and
records which files its analysis read: an edit to ``model.py`` re-checks the open
``train.py`` that imports it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from trainlint.analysis.module import ModuleModel
from trainlint.analysis.parsing import parse
from trainlint.config import CONFIG_FILES, Configuration
from trainlint.diagnostics import Diagnostic
from trainlint.fixing import FixSafety
from trainlint.linter import Linter, LintResult, display_path
from trainlint.noqa import directives, unsafe_lines, with_codes
from trainlint.sources import Source, split_lines, text_digest


@dataclass(frozen=True)
class Cell:
    """A notebook cell as the editor has it: its document (by URI), kind and text."""

    uri: str
    code: bool
    text: str


@dataclass
class Document:
    """An open file (``cells`` empty) or notebook (``text`` unused)."""

    path: Path
    text: str = ""
    version: int = 0
    cells: list[Cell] = field(default_factory=list)

    @property
    def is_notebook(self) -> bool:
        return bool(self.cells) or self.path.suffix == ".ipynb"

    def source(self) -> Source:
        """The Python text of a ``.py`` buffer."""
        return Source(self.path, self.text)

    def notebook_data(self) -> bytes:
        """A notebook as nbformat JSON: built from its cells (a notebook document), or the
        buffer itself (a ``.ipynb`` opened as text)."""
        return _notebook_json(self.cells) if self.cells else self.text.encode("utf-8")


def _notebook_json(cells: list[Cell]) -> bytes:
    """The notebook as nbformat JSON, so it is read exactly like a file on disk."""
    return json.dumps(
        {
            "cells": [{"cell_type": "code" if c.code else "markdown", "source": c.text, "metadata": {}} for c in cells],
            "metadata": {},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    ).encode()


@dataclass
class Checked:
    """A check of one document version: its findings (cells of notebooks keep their
    numbers) and the files its analysis read."""

    version: int
    result: LintResult
    dependencies: set[Path]


class Workspace:
    def __init__(self) -> None:
        self.configuration = Configuration()
        self.documents: dict[Path, Document] = {}
        self._models: dict[Path, tuple[str, ModuleModel | None]] = {}  # by text digest
        self.dependencies: dict[Path, set[Path]] = {}
        self._fixes: dict[Path, tuple[int, list[tuple[Diagnostic, str]]]] = {}

    # -- documents ------------------------------------------------------------------------------

    def open(self, document: Document) -> None:
        self.documents[document.path] = document

    def close(self, path: Path) -> None:
        self.documents.pop(path, None)
        self._models.pop(path, None)
        self.dependencies.pop(path, None)
        self._fixes.pop(path, None)

    def affected_by(self, path: Path) -> list[Path]:
        """Open documents to check again after ``path`` changed (itself included)."""
        resolved = path.resolve()
        if path.name in CONFIG_FILES:
            self.configuration = Configuration()  # settings may have changed: re-read them
            affected = list(self.documents)
        else:
            affected = [p for p in self.documents if p == path or resolved in self.dependencies.get(p, set())]
        for stale in affected:
            self._fixes.pop(stale, None)  # their fixes may differ now
        return affected

    # -- checking -------------------------------------------------------------------------------

    def check(self, path: Path) -> Checked:
        document = self.documents[path]
        linter = self._linter(path, frozenset())
        accessed = linter.project.start_tracking()
        result = self._lint(linter, document)
        # A file that changed while it was read still counts: its next change re-checks.
        read = linter.project.dependencies(accessed)
        dependencies = (set(read) if read is not None else accessed) - {path.resolve()}
        self.dependencies[path] = dependencies
        return Checked(document.version, result, dependencies)

    def fixes(self, path: Path) -> list[tuple[Diagnostic, str]]:
        """Each fixable finding of ``path`` with the document's text after its fix alone
        (computed once per document version)."""
        document = self.documents[path]
        cached = self._fixes.get(path)
        if cached is not None and cached[0] == document.version:
            return cached[1]
        found: list[tuple[Diagnostic, str]] = []
        if not document.is_notebook:  # notebooks are never rewritten
            linter = self._linter(path, frozenset(FixSafety))
            found = linter.fix_candidates(document.source(), display_path(path))
        self._fixes[path] = (document.version, found)
        return found

    def fix_all(self, path: Path) -> str | None:
        """The document's text with every safe fix applied (``None``: nothing to fix)."""
        document = self.documents[path]
        if document.is_notebook:
            return None
        result = self._lint(self._linter(path, frozenset({FixSafety.SAFE})), document)
        return result.fixed[0].fixed if result.fixed else None

    def _linter(self, path: Path, fixes: frozenset[FixSafety]) -> Linter:
        linter = Linter(self.configuration.settings_for(path), fixes)
        for other in self.documents:
            model = self._model(other)
            if model is not None:
                linter.project.adopt(model)
        return linter

    def _lint(self, linter: Linter, document: Document) -> LintResult:
        display = display_path(document.path)
        if document.is_notebook:
            return linter.lint_bytes(document.path, document.notebook_data(), display)
        # The adopted module of an open .py file is its buffer: it is not parsed again.
        reuse = self._model(document.path) is not None
        return linter.lint_source(document.source(), display, reuse=reuse)

    def _model(self, path: Path) -> ModuleModel | None:
        """The indexed module of an open ``.py`` buffer, rebuilt only when its text changed."""
        document = self.documents[path]
        if document.is_notebook:
            return None
        digest = text_digest(document.text)
        cached = self._models.get(path)
        if cached is not None and cached[0] == digest:
            return cached[1]
        try:
            resolved = path.resolve()
            model: ModuleModel | None = ModuleModel(resolved, parse(document.text), resolved.stem, digest)
        except (cst.ParserSyntaxError, RecursionError, ValueError):
            model = None
        self._models[path] = (digest, model)
        return model


# -- editing helpers (no LSP types: lines and columns are 0-based, columns in characters) -----


@dataclass(frozen=True)
class TextEdit:
    start: tuple[int, int]
    end: tuple[int, int]
    text: str


def minimal_edit(before: str, after: str) -> TextEdit:
    """One edit turning ``before`` into ``after``, spanning only what differs."""
    prefix = 0
    limit = min(len(before), len(after))
    while prefix < limit and before[prefix] == after[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and before[-1 - suffix] == after[-1 - suffix]:
        suffix += 1
    return TextEdit(_position(before, prefix), _position(before, len(before) - suffix), after[prefix : len(after) - suffix])


def _position(text: str, offset: int) -> tuple[int, int]:
    """(line, column) of ``offset``, with Python's line breaks (``\\r\\n``, ``\\r``, ``\\n``)."""
    head = text[:offset]
    lines = split_lines(head + "x")  # the sentinel keeps a trailing empty line
    return len(lines) - 1, len(lines[-1]) - 1


def noqa_edit(text: str, line: int, codes: Iterable[str]) -> TextEdit | None:
    """The edit adding ``codes`` to the ``# noqa`` of ``line`` (1-based); ``None`` where a
    comment would change the code (inside a multi-line string, after a backslash)."""
    lines = split_lines(text)
    if not 0 < line <= len(lines) or line in unsafe_lines(text):
        return None
    new = with_codes(lines[line - 1], directives(text).get(line), list(codes))
    if new == lines[line - 1]:
        return None
    return TextEdit((line - 1, 0), (line - 1, len(lines[line - 1])), new)
