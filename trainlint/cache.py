"""A content-hash cache of per-file results, like ``.ruff_cache``.

An entry is keyed by the file's display path and content (the bytes the analysis read),
and stored under a folder named after the trainlint version and a digest of the settings
that shape results (active rules, fixers, per-file ignores). Cross-file analyses read other
local files too, so an entry records every file the analysis looked at with the content
hash of the bytes it read *then* (not of the file as it is when the entry is written: a
file edited during the run must not lend its new hash to a result computed from its old
content); it is valid only while each still hashes the same. (A file that did not exist at
analysis time, such as a new sibling script that now calls a helper, is not noticed: run
``--no-cache`` when in doubt.) Writes go through a temporary file and :func:`os.replace`,
so concurrent runs never read a torn entry.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from trainlint import __version__
from trainlint.catalogue import rule_index
from trainlint.config import Settings
from trainlint.diagnostics import Diagnostic, FileError, LintResult, Severity, Span
from trainlint.sources import content_digest, read_regular

CACHE_DIR = ".trainlint_cache"
# Bumped when the layout of an entry changes: older entries are then never read.
ENTRY_FORMAT = 2


def settings_digest(settings: Settings) -> str:
    # From the rule index: a run whose files are all cached never imports the rules.
    index = rule_index()
    shape = {
        "format": ENTRY_FORMAT,
        "rules": [f"{code}:{index[code].module}" for code in sorted(settings.enabled_codes)],
        "parse_errors": settings.enabled("TL000"),
        "target_version": settings.target_version,
        "fixers": sorted(f"{info.code}:{info.fix}" for info in index.values() if info.fix),
        "per_file_ignores": sorted((k, list(v)) for k, v in settings.per_file_ignores.items()),
    }
    return content_digest(json.dumps(shape, sort_keys=True).encode())[:16]


class Cache:
    """The cache, for one run: files that several entries depend on are hashed once (a
    file edited during the run keeps the hash it had when first read)."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.base = root / CACHE_DIR
        self.directory = self.base / __version__ / settings_digest(settings)
        self._digests: dict[str, str | None] = {}

    def get(self, display: str, content: bytes) -> LintResult | None:
        try:
            entry = json.loads(self._entry(display, content).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not all(self._current_digest(path) == digest for path, digest in entry["dependencies"]):
            return None
        return LintResult(
            diagnostics=[_diagnostic(d) for d in entry["diagnostics"]],
            errors=[FileError(**e) for e in entry["errors"]],
            files=1,
        )

    def put(self, display: str, content: bytes, result: LintResult, dependencies: dict[Path, str | None]) -> None:
        """Store ``result``; ``dependencies``: the other files the analysis read, with the
        content hash of the bytes it read (``None``: absent)."""
        entry = {
            "diagnostics": [{**d.to_dict(), "fix": d.fix} for d in result.diagnostics],
            "errors": [e.to_dict() for e in result.errors],
            "dependencies": sorted([str(path), digest] for path, digest in dependencies.items()),
        }
        target = self._entry(display, content)
        try:
            self._prepare(target.parent)
            _write_atomically(target, json.dumps(entry))
        except OSError:
            pass  # a read-only checkout still lints, only without a cache

    def _current_digest(self, path: str) -> str | None:
        if path not in self._digests:
            try:
                self._digests[path] = content_digest(read_regular(Path(path)))
            except OSError:
                self._digests[path] = None
        return self._digests[path]

    def _entry(self, display: str, content: bytes) -> Path:
        # surrogateescape: a file name that is not valid UTF-8 keys by its bytes.
        key = content_digest(display.encode("utf-8", "surrogateescape") + b"\0" + content)
        return self.directory / key[:2] / f"{key}.json"

    def _prepare(self, directory: Path) -> None:
        if not self.base.is_dir():
            self.base.mkdir(parents=True, exist_ok=True)
            # Like ruff's cache: never committed, never backed up.
            (self.base / ".gitignore").write_text("# Automatically created by trainlint.\n*\n")
            (self.base / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
        directory.mkdir(parents=True, exist_ok=True)


def _write_atomically(target: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _diagnostic(data: dict[str, Any]) -> Diagnostic:
    return Diagnostic(
        code=data["code"],
        name=data["name"],
        severity=Severity(data["severity"]),
        message=data["message"],
        hint=data["hint"],
        path=data["path"],
        span=Span(data["line"], data["column"], data["end_line"], data["end_column"]),
        cell=data.get("cell"),
        fix=data["fix"] or None,  # "safe"/"unsafe": equal to the FixSafety members
    )
