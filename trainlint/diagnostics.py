"""Plain, serializable result records shared by the static linter and the runtime probe.

Nothing here imports libcst or torch: reporters, the CLI and the probe all build on these
records, so they must stay cheap to import and trivially convertible to JSON.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class Severity(str, enum.Enum):
    """How bad a finding is. Ordered: ``ERROR`` > ``WARNING`` > ``INFO``."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]


@dataclass(frozen=True)
class Span:
    """A 1-based, inclusive-start/exclusive-end source range (columns count characters)."""

    line: int
    column: int
    end_line: int
    end_column: int


@dataclass(frozen=True)
class Diagnostic:
    """One static-analysis finding: a rule violated at a place in a file.

    ``cell`` is set for notebooks only: the 1-based index of the cell among all cells, with
    ``span`` relative to that cell.
    """

    code: str
    name: str
    severity: Severity
    message: str
    hint: str
    path: str
    span: Span
    cell: int | None = None
    fix: Any = field(default=None, compare=False, repr=False)

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def column(self) -> int:
        return self.span.column

    def sort_key(self) -> tuple[str, int, int, int, str]:
        return (self.path, self.cell or 0, self.span.line, self.span.column, self.code)

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON contract (see README, "JSON output")."""
        data: dict[str, Any] = {
            "code": self.code,
            "name": self.name,
            "severity": self.severity.value,
            "message": self.message,
            "hint": self.hint,
            "path": self.path,
        }
        if self.cell is not None:
            data["cell"] = self.cell
        data.update(
            line=self.span.line,
            column=self.span.column,
            end_line=self.span.end_line,
            end_column=self.span.end_column,
        )
        return data


@dataclass(frozen=True)
class FileError:
    """A file that could not be analysed (unreadable, undecodable, not parseable)."""

    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Finding:
    """One runtime-probe finding.

    ``check`` is the probe check that produced it (``initial_loss``, ``overfit_batch``,
    ``gradient_flow``, ``amp_overflow``, ``data``, ``outputs``, ``optimizer``); ``subject``
    names the parameter, module or tensor concerned; ``details`` holds JSON-ready numbers.
    """

    check: str
    code: str
    severity: Severity
    message: str
    hint: str
    subject: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data


@dataclass(frozen=True)
class FixedFile:
    """A file whose text the fixes changed (written back, or shown as a diff)."""

    path: Path
    display: str
    original: str
    fixed: str
    fixes: int


@dataclass
class LintResult:
    """What a lint run found: findings, files the analyser failed on, fixed files."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    files: int = 0
    fixed: list[FixedFile] = field(default_factory=list)

    def extend(self, other: LintResult) -> None:
        self.diagnostics.extend(other.diagnostics)
        self.errors.extend(other.errors)
        self.files += other.files
        self.fixed.extend(other.fixed)
