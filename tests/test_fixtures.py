"""Every bundled static fixture reports exactly the bugs it marks with ``# BUG: TLxxx``
(all rules enabled), and the healthy project reports nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trainlint.testing import lint_files

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
BUG = re.compile(r"#\s*BUG:\s*(TL\d+)")
# Notebooks have their own tests (cells); probe models are not lint fixtures.
STATIC = sorted(p for p in FIXTURES.iterdir() if p.name not in ("notebooks", "probe_models"))


def _sources(fixture: Path) -> dict[str, str]:
    files = [fixture] if fixture.is_file() else sorted(fixture.glob("*.py"))
    return {path.name: path.read_text(encoding="utf-8") for path in files}


def marked_bugs(files: dict[str, str]) -> list[tuple[str, int, str]]:
    return sorted(
        (name, number, code)
        for name, text in files.items()
        for number, line in enumerate(text.splitlines(), start=1)
        for code in BUG.findall(line)
    )


@pytest.mark.parametrize("fixture", STATIC, ids=lambda p: p.name)
def test_fixture_reports_exactly_its_marked_bugs(fixture: Path) -> None:
    files = _sources(fixture)
    found = sorted((Path(d.path).name, d.line, d.code) for d in lint_files(files))
    assert found == marked_bugs(files)


def test_fixtures_cover_the_cross_file_shapes() -> None:
    bugs = {code for fixture in STATIC for _, _, code in marked_bugs(_sources(fixture))}
    assert {"TL101", "TL201", "TL302", "TL401", "TL501", "TL503", "TL601", "TL603", "TL701"} <= bugs
    assert marked_bugs(_sources(FIXTURES / "healthy_project")) == []
