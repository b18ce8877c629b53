"""The rule catalogue: one markdown page per rule (``rules/TL101-<name>.md``).

In a source checkout the pages live in ``rules/`` at the repository root; wheels ship them
as ``trainlint/_catalogue``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainlint.rule import Rule

_PACKAGE = Path(__file__).resolve().parent


def catalogue_dir() -> Path:
    bundled = _PACKAGE / "_catalogue"
    return bundled if bundled.is_dir() else _PACKAGE.parent / "rules"


def page_for(code: str) -> Path | None:
    matches = sorted(catalogue_dir().glob(f"{code}-*.md"))
    return matches[0] if matches else None


def pages() -> list[Path]:
    return sorted(catalogue_dir().glob("TL*.md"))


def fix_safety_of(rule: type[Rule]) -> str | None:
    """"safe", "unsafe" or ``None``: the rule's fixer, else what the rule declares (fixes
    the linter makes itself, such as TL901's)."""
    from trainlint.fixes import fix_safety

    safety = fix_safety(rule.code)
    return safety.value if safety is not None else rule.fix_safety
