"""Every rule has exactly one catalogue page, and the page's examples are executed:
each ``python bad`` block must flag exactly its ``# expect: CODE`` lines, each
``python good`` block must stay silent for that rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trainlint.catalogue import pages
from trainlint.rule import all_rules
from trainlint.testing import expected_lines, lint_files

SECTIONS = ("## What it does", "## Why is this bad", "## Example", "## Use instead", "## Known limits", "## References")
BLOCK = re.compile(r"```python (?P<kind>bad|good)(?P<files>(?: file=\S+)*)\n(?P<code>.*?)```", re.DOTALL)
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
