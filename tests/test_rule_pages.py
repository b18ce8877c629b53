"""Every rule has exactly one catalogue page, and the page's examples are executed:
each ``python bad`` block must flag exactly its ``# expect: CODE`` lines, each
``python good`` block must stay silent for that rule, and each ``python before`` /
``python after`` pair of a rule with an autofix is what the fix does."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from trainlint.catalogue import pages
from trainlint.config import Settings
from trainlint.diagnostics import Diagnostic
from trainlint.fixing import FixSafety
from trainlint.linter import Linter
from trainlint.rule import all_rules
from trainlint.testing import expected_lines, lint_files

SECTIONS = ("## What it does", "## Why is this bad", "## Example", "## Use instead", "## Known limits", "## References")
BLOCK = re.compile(r"```python (?P<kind>bad|good)(?P<files>(?: file=\S+)*)\n(?P<code>.*?)```", re.DOTALL)
PAIR = re.compile(r"```python before\n(?P<before>.*?)```\s*```python after\n(?P<after>.*?)```", re.DOTALL)
RULES = {rule.code: rule for rule in all_rules()}


def _page_code(page: Path) -> str:
    return page.name.split("-", 1)[0]


def _examples() -> list[tuple[str, str, str, int]]:
    found = []
    for page in pages():
        for index, match in enumerate(BLOCK.finditer(page.read_text(encoding="utf-8"))):
            found.append((_page_code(page), match.group("kind"), match.group("code"), index))
    return found


def test_one_page_per_rule_and_one_rule_per_page() -> None:
    page_codes = [_page_code(p) for p in pages()]
    assert sorted(page_codes) == sorted(RULES), "pages and registered rules differ"
    assert len(page_codes) == len(set(page_codes)), "a rule has several pages"
    for page in pages():
        assert page.name == f"{_page_code(page)}-{RULES[_page_code(page)].name}.md"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.stem)
def test_page_has_every_section_and_enough_examples(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert section in text, f"{page.name} lacks {section!r}"
    kinds = [m.group("kind") for m in BLOCK.finditer(text)]
    assert kinds.count("bad") >= 2 and kinds.count("good") >= 2, f"{page.name}: need 2 bad and 2 good examples"


@pytest.mark.parametrize(("code", "kind", "source", "index"), _examples(), ids=lambda v: str(v)[:12])
def test_page_example(code: str, kind: str, source: str, index: int) -> None:
    found = sorted(d.line for d in lint_files({"example.py": source}, select=[code]) if d.code == code)
    expected = expected_lines(source, code)
    if kind == "bad":
        assert expected, f"{code} bad example #{index} marks no line"
        assert found == expected, f"{code} bad example #{index}: flagged {found}, expected {expected}"
    else:
        assert not expected, f"{code} good example #{index} must not carry markers"
        assert found == [], f"{code} good example #{index} flagged lines {found}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.stem)
def test_fix_pairs(page: Path) -> None:
    """The fix turns each ``before`` into its ``after`` exactly (every other rule enabled
    too, as in a real run); the finding is then gone, fixing again changes nothing, and the
    result compiles. A rule with a fix shows at least one pair, one without shows none."""
    code = _page_code(page)
    text = page.read_text(encoding="utf-8")
    found = [(m.group("before"), m.group("after")) for m in PAIR.finditer(text)]
    if RULES[code].fix_safety is None:
        assert not found and "## Fix safety" not in text, f"{page.name}: {code} has no fix"
        return
    assert "## Fix safety" in text and found, f"{page.name}: a fix needs a before/after pair in its Fix safety section"
    for before, after in found:
        fixed, left = _fix(code, before)
        assert fixed == after, f"{code}: fixing\n{before}\ngave\n{fixed}"
        assert not [d for d in left if d.code == code], f"{code} still fires on the fixed pair"
        assert _fix(code, after)[0] == after, f"{code}: fixing twice changed the code again"
        compile(after, f"{page.name}:after", "exec")


def _fix(code: str, source: str) -> tuple[str, list[Diagnostic]]:
    """``source`` with every fix applied, and the findings left in it."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pyproject.toml").write_text("[project]\nname = 'example'\n")
        (root / "example.py").write_text(source, encoding="utf-8")
        result = Linter(Settings(extend_select=(code,), root=root), frozenset(FixSafety)).lint_file(root / "example.py")
        assert not result.errors, result.errors
        return (result.fixed[0].fixed if result.fixed else source), result.diagnostics
