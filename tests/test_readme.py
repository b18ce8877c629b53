"""The README's rule table lists every rule, linked to its page."""

from __future__ import annotations

from pathlib import Path

from trainlint.catalogue import page_for
from trainlint.rule import all_rules

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_table_lists_every_rule_with_its_page() -> None:
    for rule in all_rules():
        page = page_for(rule.code)
        assert page is not None
        assert f"| [{rule.code}](rules/{page.name}) | `{rule.name}` |" in README, rule.code
