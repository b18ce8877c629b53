"""Helpers for testing rules (ours and third-party ones): lint snippets, read expectations."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from trainlint.config import Settings
from trainlint.diagnostics import Diagnostic
from trainlint.linter import Linter

EXPECT = re.compile(r"#\s*expect:\s*(?P<codes>TL\d+(?:\s*,\s*TL\d+)*)")


def expected_lines(source: str, code: str) -> list[int]:
    """Lines carrying ``# expect: <code>`` markers."""
    lines = []
    for number, line in enumerate(source.splitlines(), start=1):
        match = EXPECT.search(line)
        if match and code in re.split(r"\s*,\s*", match.group("codes")):
            lines.append(number)
    return lines


def lint_files(files: dict[str, str], select: Iterable[str] = (), main: str | None = None) -> list[Diagnostic]:
    """Lint a small project given as ``{relative path: source}``; findings of ``main``
    (default: every file)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pyproject.toml").write_text("[project]\nname = 'example'\n")
        for name, text in files.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        settings = Settings(select=tuple(select), root=root)
        targets = [root / main] if main else [root / name for name in files]
        result = Linter(settings).lint_paths(targets)
        assert not result.errors, result.errors
        return result.diagnostics


def lint_snippet(source: str, select: Iterable[str] = ()) -> list[Diagnostic]:
    return lint_files({"example.py": source}, select)
